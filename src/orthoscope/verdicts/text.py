"""Plain sentences from the verdict numbers: every number printed is a value of the verdicts dict.

The words for "how many matrices" come from one function (`share_words`), used by the overall line,
the per-kind lines and the bottom line alike, so they cannot contradict each other.
"""

from __future__ import annotations

from orthoscope.verdicts import thresholds as T

LABELS = {
    "consistent": "consistent rotations", "weak": "weakly consistent rotations",
    "partial": "consistent in a minority of matrices",
    "shape-only": "above the Gaussian null only", "none": "no consistent rotations",
    "insufficient": "too few matrices for a verdict", "unavailable": "no pairing null in this run",
    "unchanged": "unchanged",
}
"""Short names of the rotation verdicts (tables, per-kind lines)."""

ONE_RUN = "one training run each"
"""Said beside every contrast between two training runs: the run records no seeds beyond one per post."""

MAX_DIGITS = 8


def num(value, digits: int = 3) -> str:
    """A number as printed in a sentence (`n/a` when missing).

    >>> num(1.23456), num(0.000123, 2), num(None), num(21)
    ('1.23', '0.00012', 'n/a', '21')
    """
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}g}"


def apart(*values, digits: int = 3) -> list[str]:
    """Numbers that are compared, each with `digits` significant digits, more where two different
    values would otherwise print alike (up to 8).

    >>> apart(0.5012, 0.5009, 0.5051)
    ['0.5012', '0.5009', '0.5051']
    >>> apart(0.52, 0.511, None)
    ['0.52', '0.511', 'n/a']
    >>> apart(12.04, 0.466), apart(0.5, 0.5)
    (['12', '0.466'], ['0.5', '0.5'])
    """
    for width in range(digits, MAX_DIGITS + 1):
        texts = [num(None if v is None else float(v), width) for v in values]
        clashes = any(texts[i] == texts[j] and float(values[i]) != float(values[j])
                      for i in range(len(values)) for j in range(i + 1, len(values))
                      if values[i] is not None and values[j] is not None)
        if not clashes:
            break
    return texts


def pct(fraction) -> str:
    """A fraction as a percentage with two significant digits.

    >>> pct(0.0015), pct(0.0524), pct(1.0), pct(None)
    ('0.15 %', '5.2 %', '100 %', 'n/a')
    """
    if fraction is None:
        return "n/a"
    value = 100 * float(fraction)
    text = f"{value:.0f}" if abs(value) >= 10 else f"{value:.2g}"
    return f"{text} %"


def share_words(count, n, noun: str = "matrices") -> str:
    """How many of `n` in words and numbers, one rule for every line that counts matrices.

    >>> share_words(11, 210), share_words(0, 21), share_words(1, 21)
    ('a minority: 11 of 210 matrices (5.2 %)', 'none of 21 matrices', '1 of 21 matrices (4.8 %)')
    >>> share_words(15, 21), share_words(28, 28), share_words(None, 0)
    ('a majority: 15 of 21 matrices (71 %)', 'all 28 of 28 matrices (100 %)', 'n/a of 0 matrices')
    """
    if count is None or not n:
        return f"n/a of {n} {noun}"
    if count == 0:
        return f"none of {n} {noun}"
    share = f"{count} of {n} {noun} ({pct(count / n)})"
    if count < T.MIN_SIGNIFICANT:
        return share
    if count == n:
        return f"all {share}"
    return f"a majority: {share}" if count / n >= T.CONSISTENT_SHARE else f"a minority: {share}"


def ci_text(r: dict) -> str:
    ci = r.get("z_pair_ci")
    return "95% interval n/a" if not ci else f"95% interval {num(ci[0])} to {num(ci[1])}"


def p_text(c: dict, column: str = "z_pair") -> str:
    """`p = 0.22, Holm 0.45`: the raw permutation p and its Holm-adjusted value when the run has it."""
    raw, holm = c.get(f"p_{column}"), c.get(f"p_{column}_holm")
    return f"p = {num(raw, 2)}" + ("" if holm is None else f", Holm {num(holm, 2)}")


def missing_clause(metrics: str | None, columns) -> str:
    """What to run when a verdict needs columns the run's metric set lacks, naming the option used.

    >>> print(missing_clause("quick", ("z_pair", "p_pair")))  # doctest: +NORMALIZE_WHITESPACE
    this run used --metrics quick, which does not compute z_pair, p_pair:
    rerun compare with --metrics all (the default) or sign-free
    """
    names = ", ".join(columns)
    fix = "rerun compare with --metrics all (the default) or sign-free"
    if metrics:
        return f"this run used --metrics {metrics}, which does not compute {names}: {fix}"
    return f"this run's table has no {names} (an older orthoscope, or a --metrics choice without them): {fix}"


def contrast_clause(c: dict | None, is_control: bool = False) -> str:
    """The control contrast of the z_pair claim in a few words, with its p-values and run count."""
    if is_control:
        return "this is the control run"
    if c is None:
        return "no control run to compare with"
    name = c["control"]
    if c.get("verdict") == "unavailable":
        return f"no contrast with {name} (no z_pair)"
    if c.get("verdict") == "insufficient" or "p_z_pair" not in c:
        return f"too few matrices to compare with {name} (n = {c['n']}; a verdict needs {T.MIN_CONTRAST} paired)"
    words = {"same": f"the same as {name}", "more": f"more consistent than {name}",
             "less": f"less consistent than {name}"}[c["verdict"]]
    diff = "" if c["verdict"] == "same" else f"z_pair {c['z_pair_diff']:+.2f}, "
    return f"{words} ({diff}{p_text(c)}, n = {c['n']}; {ONE_RUN})"


def kinds_clause(entry: dict, top: int = 3) -> str:
    """`, most in q (4 of 30), k (3 of 30)`: the kinds holding a post's matrices beyond the pairing null."""
    counts = [(kind, g["rotation"].get("bh_pair") or 0, g["rotation"].get("n_p_pair") or 0)
              for kind, g in entry.get("kinds", {}).items()]
    hits = sorted((c for c in counts if c[1]), key=lambda c: (-c[1], -c[1] / max(c[2], 1)))
    if not hits:
        return ""
    listed = ", ".join(f"{kind} ({k} of {n})" for kind, k, n in hits[:top])
    return f", {'most ' if len(hits) > top else ''}in {listed}"


def scaling_sentence(s: dict, metrics: str | None = None) -> str:
    a, d, f = num(s["a_geo"], 4), num(s["disp"]), num(s["fit_resid"])
    size = f"update size: median rel_delta {pct(s.get('rel_delta'))}"
    numbers = f"median a_geo {a}, disp {d}, fit_resid {f}; {size}; n = {s['n']}"
    verdict = s["verdict"]
    if verdict == "unavailable":
        return f"Scaling: no verdict: {missing_clause(metrics, ('disp', 'fit_resid'))}."
    if verdict == "insufficient":
        return f"Scaling: too few changed matrices for a verdict (n = {s['n']} < {T.MIN_MATRICES}; {numbers})."
    thresholds = f"disp < {num(T.DISP_UNIFORM)} and fit_resid < {num(T.FIT_RESID_UNIFORM)}"
    if verdict == "uniform":
        text = f"Scaling: near-uniform ({numbers}): one factor per matrix fits its singular values ({thresholds})"
    else:
        text = f"Scaling: not near-uniform ({numbers}): disp or fit_resid is over its threshold ({thresholds})"
    null = s.get("null") or {}
    if null.get("disp") is not None:
        mine, theirs = apart(s["disp"], null["disp"])
        relation = "more uniform than" if s["disp"] < null["disp"] else "no more uniform than"
        text += (f"; a random update of the same size gives disp {theirs} (this post {mine}), fit_resid "
                 f"{num(null['fit_resid'])}: {relation} a random update")
    else:
        text += "; no random-update null in this run: the reference is the thresholds"
    return text + "."


def rotation_sentence(r: dict, group: dict, metrics: str | None = None, kinds: str = "") -> str:
    verdict = r["verdict"]
    beyond = f"{share_words(r['bh_pair'], r['n_p_pair'])} beyond the pairing null (BH, q = {num(T.Q_BH)})"
    gauss = share_words(r["bh_gauss"], r["n_p_gauss"])
    z = f"median z_pair {num(r['z_pair'])} ({ci_text(r)})"
    sym, pair, gnull = apart(r["sym_frac"], r["sym_frac_pair_null"], r["sym_frac_null"])
    nulls = f"median sym_frac {sym} vs pairing null {pair} and Gaussian null {gnull}"
    if verdict == "unchanged":
        if group["n_changed"] == 0:
            return f"Post identical to base: no matrix changed (n = {group['n']})."
        return (f"No matrix changed beyond the noise floor: {group['n_noise_floor']} of {group['n']} at the "
                f"noise floor, the others unchanged.")
    if verdict == "unavailable":
        sym, gnull = apart(r["sym_frac"], r["sym_frac_null"])
        return (f"Rotations: no verdict: {missing_clause(metrics, ('z_pair', 'p_pair'))}; "
                f"median sym_frac {sym} vs Gaussian null {gnull}.")
    if verdict == "insufficient":
        return (f"Rotations: too few usable matrices for a verdict (n = {r['n']} < {T.MIN_MATRICES}); "
                f"{z}; {nulls}.")
    if verdict == "consistent":
        return f"Rotations: consistent: {beyond}, {z}; {nulls}."
    if verdict == "weak":
        return (f"Rotations: weakly consistent: {beyond}, but the typical matrix is not clearly beyond it: {z}, "
                f"lower end not above {num(T.Z_CI_LOW)}; {nulls}.")
    if verdict == "partial":
        return f"Rotations: consistent in a minority only: {beyond}{kinds}, {z}; {nulls}."
    if verdict == "shape-only":
        return (f"Rotations: above the Gaussian null only: {beyond}, {z}; {gauss} are above the Gaussian "
                f"null, so sym_frac exceeds it because of where the update sits, not because left and right "
                f"rotations agree; {nulls}.")
    return f"Rotations: no sign of consistent rotations: {beyond}, {gauss} beyond the Gaussian null; {z}; {nulls}."


def contrast_sentence(c: dict | None) -> str | None:
    if c is None:
        return None
    name = c["control"]
    if c["verdict"] == "unavailable":
        return f"Against {name}: no z_pair in this run, no contrast."
    if c["verdict"] == "insufficient" or "p_z_pair" not in c:
        return (f"Against {name}: too few matrices to tell (n = {c['n']}, {c['n_control']} in {name}; "
                f"a verdict needs {T.MIN_CONTRAST} paired).")
    pairs = f"n = {c['n']} paired matrices" if c["paired"] else f"n = {c['n']} and {c['n_control']} matrices"
    what = "median paired difference" if c["paired"] else "difference of medians"
    mine, theirs = apart(c["z_pair"], c["z_pair_control"])
    text = (f"Against {name} ({ONE_RUN}): median z_pair {mine} vs {theirs} ({what} {num(c['z_pair_diff'])}, "
            f"permutation {p_text(c)}, {pairs})")
    if "p_sym_frac" in c:
        mine, theirs = apart(c["sym_frac"], c["sym_frac_control"])
        text += f"; median sym_frac {mine} vs {theirs} ({p_text(c, 'sym_frac')})"
    alpha = num(T.ALPHA_CONTRAST)
    ending = {"more": f"rotations more consistent than in {name}", "less": f"rotations less consistent than in {name}",
              "same": f"not distinguishable from {name} (Holm-adjusted p >= {alpha})"}[c["verdict"]]
    return f"{text}: {ending}."


def post_sentences(entry: dict, metrics: str | None = None) -> dict:
    """{"scaling", "rotation", "control"}: one sentence per claim for a whole post."""
    overall = entry["overall"]
    rotation = rotation_sentence(overall["rotation"], overall, metrics, kinds_clause(entry))
    if overall["rotation"]["verdict"] == "unchanged":
        return {"scaling": None, "rotation": rotation, "control": None}
    return {"scaling": scaling_sentence(overall["scaling"], metrics), "rotation": rotation,
            "control": contrast_sentence(overall["contrast"])}


def group_sentence(kind: str, g: dict) -> str:
    """One line for one kind: the rotation verdict, its numbers, the scaling and the control contrast."""
    r, s, c = g["rotation"], g["scaling"], g["contrast"]
    if r["verdict"] == "unchanged":
        return f"{kind}: unchanged (n = {g['n']}, {g['n_noise_floor']} at the noise floor)."
    text = f"{kind}: {LABELS[r['verdict']]}"
    if r["n"]:
        text += (f"; {share_words(r['bh_pair'], r['n_p_pair'])} beyond the pairing null, median z_pair "
                 f"{num(r['z_pair'])} ({ci_text(r)})")
    text += (f"; a_geo {num(s['a_geo'], 4)}, disp {num(s['disp'])}, rel_delta {pct(s.get('rel_delta'))} "
             f"(n = {g['n_used']})")
    if c is not None and "p_z_pair" in c:
        text += f"; vs {c['control']}: z_pair difference {num(c['z_pair_diff'])}, {p_text(c)}"
    return text + "."
