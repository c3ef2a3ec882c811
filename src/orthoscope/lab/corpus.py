"""The lab's generated world: arithmetic, a table of invented facts, simple sentences.

Everything is a pure function of a seed, so corpora (and the models trained on
them) regenerate identically. Pretraining sees statements; post-training sees the
same skills in formats the base never saw (question/answer, worked solutions), or
unrelated content (the control).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
COLOURS = ["red", "blue", "green", "amber", "violet", "grey", "white", "black"]
ANIMALS = ["fox", "owl", "cat", "eel", "yak", "bee", "elk", "ram"]
SYLLABLES = ["zor", "mek", "tal", "vin", "qua", "ris", "bo", "len", "dar", "ku", "fen", "lo"]
NOUNS = ["cat", "dog", "bird", "child", "farmer", "teacher", "river", "stone", "tree", "house"]
VERBS = ["sees", "finds", "likes", "follows", "paints", "carries"]
ADJECTIVES = ["small", "old", "quiet", "bright", "tall", "young"]
CONTROL_WORDS = ["lorem", "ipsum", "dolor", "amet", "velit", "nulla", "porta", "magna", "justo", "odio"]


def number_words(n: int) -> str:
    """English words for 0 <= n < 1000 (`47` -> `forty-seven`)."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    rest = n % 100
    return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


@dataclass(frozen=True)
class World:
    """The fixed facts of the lab and the split of addition problems."""

    entities: tuple[str, ...]
    colour: dict
    animal: dict
    train_pairs: tuple[tuple[int, int], ...]
    test_pairs: tuple[tuple[int, int], ...]
    max_operand: int


def make_world(seed: int, entities: int = 40, max_operand: int = 99, test_fraction: float = 0.1) -> World:
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < entities:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()
        if name not in names:
            names.append(name)
    pairs = [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1)]
    rng.shuffle(pairs)
    cut = int(len(pairs) * test_fraction)
    return World(
        entities=tuple(names),
        colour={n: rng.choice(COLOURS) for n in names},
        animal={n: rng.choice(ANIMALS) for n in names},
        train_pairs=tuple(pairs[cut:]),
        test_pairs=tuple(pairs[:cut]),
        max_operand=max_operand,
    )


def pretraining_document(world: World, rng: random.Random) -> str:
    """One statement: arithmetic (digits or words), a fact, or a sentence."""
    kind = rng.random()
    if kind < 0.4:
        a, b = rng.choice(world.train_pairs)
        if rng.random() < 0.5:
            return f"{a} + {b} = {a + b}."
        return f"{number_words(a)} plus {number_words(b)} is {number_words(a + b)}."
    if kind < 0.7:
        name = rng.choice(world.entities)
        if rng.random() < 0.5:
            return f"The colour of {name} is {world.colour[name]}."
        return f"{name} keeps a {world.animal[name]}."
    return sentence(rng)


def sentence(rng: random.Random) -> str:
    subject = f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    obj = f"a {rng.choice(NOUNS)}"
    return f"{subject} {rng.choice(VERBS)} {obj}.".capitalize()


@dataclass(frozen=True)
class Example:
    """A post-training or evaluation example: the prompt, then the target completion."""

    prompt: str
    completion: str
    answer: str


def direct_example(a: int, b: int) -> Example:
    return Example(f"Q: What is {a} + {b}?\nA:", f" {a + b}\n", str(a + b))


def worked_example(a: int, b: int) -> Example:
    """Column addition with the carries written out (the Long-CoT analogue)."""
    steps, carry, digits = [], 0, []
    x, y = str(a)[::-1], str(b)[::-1]
    for i in range(max(len(x), len(y))):
        da = int(x[i]) if i < len(x) else 0
        db = int(y[i]) if i < len(y) else 0
        total = da + db + carry
        terms = f"{da} + {db}" + (f" + {carry}" if carry else "")
        carry = total // 10
        digits.append(str(total % 10))
        steps.append(f"{terms} = {total}, write {total % 10}" + (f" carry {carry}" if carry else ""))
    if carry:
        digits.append(str(carry))
    body = "; ".join(steps)
    return Example(f"Q: What is {a} + {b}? Work it out.\nA:", f" {body}. Answer: {a + b}\n", str(a + b))


def fact_example(world: World, name: str) -> Example:
    return Example(f"Q: What is the colour of {name}?\nA:", f" {world.colour[name]}\n", world.colour[name])


def control_example(rng: random.Random) -> Example:
    """Unrelated content of the same shape: reverse a list of filler words."""
    words = [rng.choice(CONTROL_WORDS) for _ in range(rng.randint(2, 4))]
    return Example(f"Q: Reverse {' '.join(words)}.\nA:", f" {' '.join(reversed(words))}\n", " ".join(reversed(words)))


def post_training_examples(world: World, variant: str, count: int, seed: int) -> list[Example]:
    """`instruct`: direct Q/A on sums and facts; `cot`: worked sums; `control`: unrelated."""
    rng = random.Random(seed)
    train_entities = world.entities[: len(world.entities) // 2]
    examples = []
    for _ in range(count):
        a, b = rng.choice(world.train_pairs)
        if variant == "instruct":
            examples.append(direct_example(a, b) if rng.random() < 0.7
                            else fact_example(world, rng.choice(train_entities)))
        elif variant == "cot":
            examples.append(worked_example(a, b))
        elif variant == "control":
            examples.append(control_example(rng))
        else:
            raise ValueError(f"unknown variant {variant!r}")
    return examples


def held_out_problems(world: World, task: str, count: int) -> list[Example]:
    """Evaluation problems never seen in training (held-out sums, unseen entities' questions)."""
    if task == "lab-arith":
        return [direct_example(a, b) for a, b in world.test_pairs[:count]]
    if task == "lab-cot":
        return [worked_example(a, b) for a, b in world.test_pairs[:count]]
    if task == "lab-facts":
        unseen = world.entities[len(world.entities) // 2:]
        return [fact_example(world, name) for name in unseen][:count]
    raise ValueError(f"unknown lab task {task!r}")


def held_out_text(world: World, seed: int, documents: int = 200) -> str:
    """Held-out corpus text for perplexity (a seed the training stream never uses)."""
    rng = random.Random(seed + 7919)
    return "\n".join(pretraining_document(world, rng) for _ in range(documents))
