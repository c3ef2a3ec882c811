"""Instruction data the project generates itself: many task families, held-out families and instances.

Every instruction is a pure function of a seed. A family makes one instance from a
`random.Random`: the user's request, the reference answer (one line), the worked
steps (for the cot variant) and how an answer is checked. Families ask for
formatting, extraction, arithmetic word problems, list and string operations,
rewriting, and short factual questions over a generated world (the facts are given
in the prompt: a base can answer them by reading).

Two splits keep training and evaluation apart:

* HELD_OUT families never appear in a training stream;
* of the other families, an instance whose (family, prompt) hashes into the
  evaluation bucket (1 in EVAL_BUCKETS) is never trained on: `evaluation_set` draws
  only those.

>>> items = evaluation_set(per_family=2)
>>> len(items) == 2 * len(FAMILIES), all(is_eval_instance(i) or i.family in HELD_OUT for i in items)
(True, True)
>>> item = next(training_stream(0))
>>> item.family in HELD_OUT, is_eval_instance(item), item.check(item.answer)
(False, False, 1.0)
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from orthoscope.lab.corpus import ADJECTIVES, ANIMALS, COLOURS, NOUNS, make_world

EVAL_BUCKETS = 8  # one instance in 8 of a trained family is reserved for evaluation
FRUITS = ["apples", "pears", "plums", "eggs", "pens", "stamps", "shells", "coins", "books", "cards"]
WORDS = ["river", "stone", "garden", "window", "basket", "candle", "ladder", "pocket", "silver", "market",
         "butter", "finger", "harbor", "lantern", "meadow", "pepper", "rabbit", "saddle", "tunnel", "violin",
         "wagon", "anchor", "bottle", "carpet", "dragon", "forest", "hammer", "island", "jacket", "kettle"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
TOWNS = ["Arlen", "Brisk", "Corva", "Dunmere", "Elst", "Farrow", "Gisla", "Hollin", "Irvik", "Jarrow"]
DOMAINS = ["mail.org", "post.net", "letters.com", "inbox.io"]
# verb: (past tense, base form after "does not")
VERBS = {"sees": ("saw", "see"), "finds": ("found", "find"), "likes": ("liked", "like"),
         "follows": ("followed", "follow"), "paints": ("painted", "paint"), "carries": ("carried", "carry"),
         "watches": ("watched", "watch"), "holds": ("held", "hold"), "visits": ("visited", "visit")}


def normalize(text: str) -> str:
    """Case-folded, single-spaced, without surrounding quotes or a final full stop.

    >>> normalize('  "Seven  Apples." ')
    'seven apples'
    """
    return " ".join(text.strip().strip("\"'").rstrip(".").strip("\"'").split()).casefold()


def exact(reference: str, answer: str) -> float:
    """1.0 when the normalized answer equals the normalized reference, else 0.0.

    >>> exact("3, 5, 9", "3, 5, 9."), exact("3, 5, 9", "3, 9, 5")
    (1.0, 0.0)
    """
    return float(normalize(reference) == normalize(answer))


def exact_case(reference: str, answer: str) -> float:
    """Exact match that keeps letter case (for the formatting families).

    >>> exact_case("Red Fox", "Red Fox."), exact_case("Red Fox", "red fox")
    (1.0, 0.0)
    """
    return float(" ".join(answer.strip().rstrip(".").split()) == " ".join(reference.strip().rstrip(".").split()))


def numeric(reference: str, answer: str) -> float:
    """1.0 when the answer's only number equals the reference number (`19`, `19.0`, `19 apples`).

    >>> numeric("19", "19 apples"), numeric("19", "There are 19."), numeric("19", "18 or 19")
    (1.0, 1.0, 0.0)
    """
    found = re.findall(r"-?\d+(?:\.\d+)?", answer.replace(",", ""))
    return float(len(found) == 1 and float(found[0]) == float(reference))


def token_f1(reference: str, answer: str) -> float:
    """Scored: F1 of the normalized word multisets (1.0 only for the same words).

    >>> round(token_f1("The cat saw a dog", "the cat saw the dog"), 3)
    0.8
    """
    ref, got = normalize(reference).split(), normalize(answer).split()
    common = sum(min(ref.count(w), got.count(w)) for w in set(ref))
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Instruction:
    """One instance: `prompt` (the user's turn), `answer` (one line), `steps` (the worked solution)."""

    family: str
    prompt: str
    answer: str
    steps: tuple[str, ...]

    @property
    def solution(self) -> str:
        """The cot variant's reply: the steps, then `Answer: ...` (one line)."""
        return " ".join(self.steps) + f" Answer: {self.answer}"

    def check(self, text: str) -> float:
        """Score of a model's reply (1.0 = correct): its answer is read by `extract_answer`."""
        return FAMILIES[self.family].checker(self.answer, extract_answer(text))


def extract_answer(text: str) -> str:
    """The answer in a reply: its first non-empty line, from after its last `Answer:` if it has one.

    >>> extract_answer("7 + 5 = 12. Answer: 12\\nmore"), extract_answer("\\n12\\n")
    ('12', '12')
    """
    lines = [line for line in text.split("\n") if line.strip()]
    line = lines[0] if lines else ""
    return line.rsplit("Answer:", 1)[-1].strip()


@dataclass(frozen=True)
class Family:
    """A task family: its kind (formatting, extraction, ...), a maker and an answer checker."""

    name: str
    kind: str
    make: Callable[[random.Random, tuple[str, ...]], Instruction]
    checker: Callable[[str, str], float]


def _names(rng: random.Random, names: tuple[str, ...], k: int) -> list[str]:
    return rng.sample(names, k)


def _phrase(rng: random.Random, n: int = 3) -> list[str]:
    return rng.sample(WORDS, n)


def _sentence(rng: random.Random) -> tuple[str, str, str, str]:
    subject = f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    verb = rng.choice(sorted(VERBS))
    obj = f"a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    return subject, verb, obj, f"{subject} {verb} {obj}."


def uppercase(rng, names):
    words = _phrase(rng, rng.randint(2, 4))
    text = " ".join(words)
    return Instruction("uppercase", f"Write in capital letters: {text}", text.upper(),
                       (f"Each letter of '{text}' becomes a capital.",))


def title_case(rng, names):
    words = _phrase(rng, rng.randint(2, 4))
    text = " ".join(words)
    return Instruction("title_case", f"Capitalize the first letter of every word: {text}",
                       " ".join(w.capitalize() for w in words), ("Each word starts with a capital letter.",))


def hyphen_join(rng, names):
    words = _phrase(rng, rng.randint(3, 5))
    return Instruction("hyphen_join", f"Join these words with hyphens: {', '.join(words)}", "-".join(words),
                       (f"The {len(words)} words in order, with '-' between them.",))


def date_format(rng, names):
    year, month, day = rng.randint(1950, 2049), rng.randint(1, 12), rng.randint(1, 28)
    return Instruction("date_format", f"Write the date {year}-{month:02d}-{day:02d} as day, month name, year.",
                       f"{day} {MONTHS[month - 1]} {year}",
                       (f"Year {year}, month {month} is {MONTHS[month - 1]}, day {day}.",))


def extract_number(rng, names):
    name, n, thing = rng.choice(names), rng.randint(2, 999), rng.choice(FRUITS)
    town = rng.choice(TOWNS)
    return Instruction("extract_number", f"What number appears in this sentence? \"{name} sold {n} {thing} "
                       f"in {town} on market day.\"", str(n), (f"The only number in the sentence is {n}.",))


def extract_name(rng, names):
    name, town, thing = rng.choice(names), rng.choice(TOWNS), rng.choice(FRUITS)
    return Instruction("extract_name", f"Who is named in this sentence? \"Last week {name} carried {thing} to "
                       f"{town}.\"", name, (f"{town} is a town; the person is {name}.",))


def extract_email(rng, names):
    name, domain, town = rng.choice(names), rng.choice(DOMAINS), rng.choice(TOWNS)
    address = f"{name.lower()}{rng.randint(1, 99)}@{domain}"
    return Instruction("extract_email", f"Extract the email address: \"Write to {name} in {town} at {address} "
                       f"before noon.\"", address, (f"The email address is the word with '@': {address}.",))


def word_add(rng, names):
    name, a, b, thing = rng.choice(names), rng.randint(2, 60), rng.randint(2, 39), rng.choice(FRUITS)
    return Instruction("word_add", f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} "
                       f"have now?", str(a + b), (f"{a} + {b} = {a + b}.",))


def word_sub(rng, names):
    name, thing = rng.choice(names), rng.choice(FRUITS)
    a = rng.randint(10, 99)
    b = rng.randint(1, a - 1)
    return Instruction("word_sub", f"{name} had {a} {thing} and gave away {b}. How many {thing} are left?",
                       str(a - b), (f"{a} - {b} = {a - b}.",))


def word_mul(rng, names):
    per, boxes, thing = rng.randint(2, 12), rng.randint(2, 12), rng.choice(FRUITS)
    name = rng.choice(names)
    return Instruction("word_mul", f"Each box of {name}'s holds {per} {thing}. How many {thing} are in {boxes} "
                       f"boxes?", str(per * boxes), (f"{boxes} x {per} = {per * boxes}.",))


def _numbers(rng: random.Random) -> list[int]:
    return rng.sample(range(1, 100), rng.randint(4, 6))


def sort_numbers(rng, names):
    xs = _numbers(rng)
    ordered = sorted(xs)
    return Instruction("sort_numbers", f"Sort from smallest to largest: {', '.join(map(str, xs))}",
                       ", ".join(map(str, ordered)), (f"The smallest is {ordered[0]} and the largest {ordered[-1]}.",))


def max_of_list(rng, names):
    xs = _numbers(rng)
    return Instruction("max_of_list", f"Which number is the largest: {', '.join(map(str, xs))}?", str(max(xs)),
                       (f"Comparing them in turn, {max(xs)} is larger than the others.",))


def min_of_list(rng, names):
    xs = _numbers(rng)
    return Instruction("min_of_list", f"Which number is the smallest: {', '.join(map(str, xs))}?", str(min(xs)),
                       (f"Comparing them in turn, {min(xs)} is smaller than the others.",))


def count_items(rng, names):
    items = rng.sample(WORDS, rng.randint(2, 9))
    return Instruction("count_items", f"How many items are in this list: {', '.join(items)}?", str(len(items)),
                       (f"Counting them one by one gives {len(items)}.",))


def reverse_list(rng, names):
    items = rng.sample(WORDS, rng.randint(3, 5))
    return Instruction("reverse_list", f"Write this list in reverse order: {', '.join(items)}",
                       ", ".join(reversed(items)), (f"The last item, {items[-1]}, comes first.",))


def _word(rng: random.Random, names: tuple[str, ...]) -> str:
    pool = WORDS + NOUNS + ADJECTIVES + COLOURS + ANIMALS + FRUITS
    return rng.choice(pool + [n.lower() for n in names + tuple(TOWNS)])


def reverse_word(rng, names):
    word = _word(rng, names)
    return Instruction("reverse_word", f"Spell the word '{word}' backwards.", word[::-1],
                       (f"The letters {'-'.join(word)} in reverse are {'-'.join(word[::-1])}.",))


def first_letters(rng, names):
    words = _phrase(rng, rng.randint(3, 6))
    return Instruction("first_letters", f"Write the first letter of each word, with no spaces: {' '.join(words)}",
                       "".join(w[0] for w in words), (", ".join(f"{w} gives {w[0]}" for w in words) + ".",))


def count_letters(rng, names):
    word = _word(rng, names)
    return Instruction("count_letters", f"How many letters are in the word '{word}'?", str(len(word)),
                       (f"{'-'.join(word)} has {len(word)} letters.",))


def past_tense(rng, names):
    subject, verb, obj, text = _sentence(rng)
    return Instruction("past_tense", f"Rewrite in the past tense: {text}", f"{subject} {VERBS[verb][0]} {obj}.",
                       (f"'{verb}' becomes '{VERBS[verb][0]}'.",))


def negate(rng, names):
    subject, verb, obj, text = _sentence(rng)
    return Instruction("negate", f"Rewrite as a negative sentence: {text}",
                       f"{subject} does not {VERBS[verb][1]} {obj}.",
                       (f"'{verb}' becomes 'does not {VERBS[verb][1]}'.",))


def _facts(rng: random.Random, names: tuple[str, ...]) -> tuple[list[str], dict, dict, str]:
    people = _names(rng, names, 3)
    colour = {p: rng.choice(COLOURS) for p in people}
    animal = {p: rng.choice(ANIMALS) for p in people}
    facts = [f"{p} lives in a {colour[p]} house and keeps a {animal[p]}." for p in people]
    return people, colour, animal, " ".join(facts)


def world_colour(rng, names):
    people, colour, _, facts = _facts(rng, names)
    who = rng.choice(people)
    return Instruction("world_colour", f"{facts} What colour is {who}'s house?", colour[who],
                       (f"The facts say {who} lives in a {colour[who]} house.",))


def world_animal(rng, names):
    people, _, animal, facts = _facts(rng, names)
    who = rng.choice(people)
    return Instruction("world_animal", f"{facts} Which animal does {who} keep?", animal[who],
                       (f"The facts say {who} keeps a {animal[who]}.",))


_FAMILY_LIST = [
    Family("uppercase", "formatting", uppercase, exact_case),
    Family("title_case", "formatting", title_case, exact_case),
    Family("hyphen_join", "formatting", hyphen_join, exact),
    Family("date_format", "formatting", date_format, exact),
    Family("extract_number", "extraction", extract_number, numeric),
    Family("extract_name", "extraction", extract_name, exact),
    Family("extract_email", "extraction", extract_email, exact),
    Family("word_add", "arithmetic", word_add, numeric),
    Family("word_sub", "arithmetic", word_sub, numeric),
    Family("word_mul", "arithmetic", word_mul, numeric),
    Family("sort_numbers", "list", sort_numbers, exact),
    Family("max_of_list", "list", max_of_list, numeric),
    Family("min_of_list", "list", min_of_list, numeric),
    Family("count_items", "list", count_items, numeric),
    Family("reverse_list", "list", reverse_list, exact),
    Family("reverse_word", "string", reverse_word, exact),
    Family("first_letters", "string", first_letters, exact),
    Family("count_letters", "string", count_letters, numeric),
    Family("past_tense", "rewriting", past_tense, token_f1),
    Family("negate", "rewriting", negate, token_f1),
    Family("world_colour", "world", world_colour, exact),
    Family("world_animal", "world", world_animal, exact),
]
FAMILIES = {f.name: f for f in _FAMILY_LIST}
# one family per kind with a sibling in training is held out entirely
HELD_OUT = ("title_case", "extract_email", "word_mul", "min_of_list", "count_letters", "negate", "world_animal")
TRAIN_FAMILIES = tuple(name for name in FAMILIES if name not in HELD_OUT)


def world_names(seed: int = 0) -> tuple[str, ...]:
    """The invented people of the lab world of `seed` (corpus.make_world)."""
    return make_world(seed, entities=60).entities


def is_eval_instance(item: Instruction) -> bool:
    """Whether (family, prompt) falls in the evaluation bucket (a stable hash, not Python's salted one)."""
    digest = hashlib.sha256(f"{item.family}\n{item.prompt}".encode()).digest()
    return digest[0] % EVAL_BUCKETS == 0


def training_stream(seed: int, world_seed: int = 0) -> Iterator[Instruction]:
    """An endless, seeded stream of training instances: families in TRAIN_FAMILIES, no evaluation instance."""
    rng = random.Random(seed)
    names = world_names(world_seed)
    while True:
        item = FAMILIES[rng.choice(TRAIN_FAMILIES)].make(rng, names)
        if not is_eval_instance(item):
            yield item


def evaluation_set(per_family: int = 10, seed: int = 12345, world_seed: int = 0,
                   families: tuple[str, ...] | None = None) -> list[Instruction]:
    """`per_family` distinct evaluation instances of each family (held-out instances of trained
    families, any instance of held-out ones), in family order; raises if a family has too few."""
    names = world_names(world_seed)
    out: list[Instruction] = []
    for index, name in enumerate(families or tuple(FAMILIES)):
        rng = random.Random(seed * 1000 + index)
        seen: dict[str, Instruction] = {}
        for _ in range(200 * per_family):
            if len(seen) == per_family:
                break
            item = FAMILIES[name].make(rng, names)
            if name in HELD_OUT or is_eval_instance(item):
                seen.setdefault(item.prompt, item)
        if len(seen) < per_family:
            raise ValueError(f"family {name} has fewer than {per_family} distinct evaluation instances")
        out += seen.values()
    return out


def control_paragraph(rng: random.Random, names: tuple[str, ...]) -> str:
    """Unrelated running text: a short generated story about the world's people and towns.

    >>> control_paragraph(random.Random(0), world_names())[:30]
    'In Gisla the quiet tree waited'
    """
    people = _names(rng, names, 2)
    town, other = rng.sample(TOWNS, 2)
    parts = [f"In {town} the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} waited for the {rng.choice(MONTHS)} rain.",
             f"{people[0]} walked to {other} with a basket of {rng.choice(FRUITS)} and a {rng.choice(ANIMALS)}.",
             f"The road passed a {rng.choice(COLOURS)} {rng.choice(WORDS)} and a {rng.choice(ADJECTIVES)} "
             f"{rng.choice(WORDS)}.",
             f"{people[1]} {rng.choice(sorted(VERBS))} the {rng.choice(NOUNS)} near the {rng.choice(WORDS)}, "
             f"and {people[0]} {VERBS[rng.choice(sorted(VERBS))][0]} it too."]
    rng.shuffle(parts[1:])
    return " ".join(parts[: rng.randint(2, 4)])


def control_stream(seed: int, world_seed: int = 0) -> Iterator[str]:
    """An endless, seeded stream of control paragraphs (the size-matched control's text)."""
    rng = random.Random(seed + 104729)
    names = world_names(world_seed)
    while True:
        yield control_paragraph(rng, names)
