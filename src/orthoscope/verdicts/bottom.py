"""The bottom line: per post, each of the paper's claims as holds / does not hold / can't tell.

`bottom_line(verdicts)` reads summary.json's `verdicts` dict (what `compute_verdicts` returns) and
gives one `Claim` per post and claim; `bottom_line_text` wraps them for a terminal, the paper named
first. Every number in a sentence is a value of the verdicts dict; the words come from the documented
thresholds in `orthoscope.verdicts.thresholds`.

>>> from orthoscope.verdicts.bottom import bottom_line
>>> bottom_line({"posts": {}})
[]
"""

from __future__ import annotations

import functools
import textwrap
from dataclasses import dataclass

from orthoscope.verdicts import thresholds as T
from orthoscope.verdicts.text import (
    apart,
    ci_text,
    contrast_clause,
    kinds_clause,
    missing_clause,
    num,
    pct,
    share_words,
)

PAPER = "He & Cao, arXiv 2509.17866"
HOLDS, FAILS, UNSURE = "holds", "does not hold", "can't tell"
STATUSES = (HOLDS, FAILS, UNSURE)
SCALING_CLAIM = "Near-uniform scaling"
ROTATION_CLAIM = "Consistent rotations"
CLAIMS = (SCALING_CLAIM, ROTATION_CLAIM)
"""The paper's two claims about the weights, in the order every post lists them."""

GLOSSARY: dict[str, str] = {
    "rel_delta": "How far post-training moved a matrix: ||W_post - W_base|| / ||W_base|| (0.15 % means the "
                 "weights changed by 0.15 % of their size).",
    "a_geo": "The one factor that best scales the base's singular values onto the post's (geometric mean of "
             "s_post,i / s_base,i): 1.02 means the matrix grew by 2 % in every direction.",
    "disp": "How unequal that scaling is: the spread (standard deviation) of log(s_post,i / s_base,i). "
            "Below 0.1 the singular values moved by nearly one factor ('near-uniform').",
    "fit_resid": "What one scaling factor leaves unexplained: ||s_post - a_geo s_base|| / ||s_post||.",
    "sym_frac": "How symmetric the rotation of the singular vectors is: the share of the energy of "
                "D = U_base^T W_post V_base that sits in its symmetric part. 0.5 is what an unstructured "
                "update gives; 1 means the left and right singular vectors turned together.",
    "pairing null": "What sym_frac would be if the left and right rotations did NOT agree: D's entries keep "
                    "their sizes but the signs of each mirrored pair (D_ij, D_ji) are independent. A matrix "
                    "beyond this null has rotations that agree, which is the paper's claim.",
    "Gaussian null": "sym_frac of a random Gaussian update of the same size. Exceeding it can come from where "
                     "the update sits (its shape), not only from agreeing rotations: the pairing null is the "
                     "stricter test.",
    "z_pair": "How many standard deviations a matrix's sym_frac lies above its pairing null (0: no sign of "
              "agreeing rotations; above 2: clearly beyond).",
    "BH": "Benjamini-Hochberg: the count of matrices beyond a null after allowing for testing many matrices "
          "at once, with at most 5 % of those counted expected to be false alarms (q = 0.05).",
    "Holm": "Holm's correction: each control contrast's p-value adjusted for the other contrasts the run "
            "reports, so that the chance of any false 'differs from the control' stays below 5 %.",
    "control": "A post-training run of the same base on unrelated data (the post named 'control' or "
               "--control NAME). A claim that the control shows as strongly is not specific to the recipe. "
               "One training run each: a difference between two runs may also be the seed's.",
}
"""Plain-language meaning of the words the bottom line and the report use."""


@dataclass(frozen=True)
class Claim:
    """One claim of the paper for one post, judged from the run's numbers.

    `status` is exactly one of "holds", "does not hold", "can't tell"; `sentence` is one plain line with
    its key number, n and the control contrast when there is one; `todo` says what to run to decide when
    the run cannot ("can't tell").
    """

    post: str
    claim: str
    status: str
    sentence: str
    todo: str | None = None


def bottom_line(verdicts: dict) -> list[Claim]:
    """Per post (in the run's order), one `Claim` per claim of the paper.

    >>> v = {"control": None, "posts": {"p": {"overall": {"n": 4, "n_changed": 0, "n_noise_floor": 0,
    ...      "n_used": 0, "scaling": {}, "rotation": {"verdict": "unchanged"}, "contrast": None}, "kinds": {}}}}
    >>> [(c.claim, c.status) for c in bottom_line(v)]
    [('Near-uniform scaling', "can't tell"), ('Consistent rotations', "can't tell")]
    """
    claims = []
    for post, entry in (verdicts or {}).get("posts", {}).items():
        claims += [_scaling_claim(post, entry, verdicts), _rotation_claim(post, entry, verdicts)]
    return claims


def bottom_line_text(verdicts: dict, width: int = 80) -> list[str]:
    """Terminal lines no wider than `width`: the paper first, then per post its claims.

    >>> bottom_line_text({"posts": {}})[0]
    'Bottom line (the claims of He & Cao, arXiv 2509.17866):'
    """
    width = max(40, int(width))
    lines = [f"Bottom line (the claims of {PAPER}):"]
    claims = bottom_line(verdicts)
    if not claims:
        return lines + ["  no post to judge"]  # the verdicts' notes say why; callers print them
    control = (verdicts or {}).get("control")
    for post in dict.fromkeys(c.post for c in claims):
        lines.append(f"{post}" + (" (the control run)" if post == control else ""))
        for c in (c for c in claims if c.post == post):
            lines += textwrap.wrap(f"{c.claim}: {c.status.upper()} - {c.sentence}", width,
                                   initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False)
            if c.todo:
                lines += textwrap.wrap(f"to decide: {c.todo}", width, initial_indent="      ",
                                       subsequent_indent="      ", break_on_hyphens=False)
    return lines


def _unchanged(entry: dict) -> str | None:
    overall = entry["overall"]
    if overall["rotation"].get("verdict") != "unchanged":
        return None
    if overall["n_changed"] == 0:
        return f"the post is identical to the base: no matrix changed (n = {overall['n']})"
    return (f"no matrix changed beyond the noise floor ({overall['n_noise_floor']} of {overall['n']} at the "
            f"noise floor)")


UNCHANGED_TODO = "compare a post whose weights differ from the base (check the post's path)"


def _scaling_claim(post: str, entry: dict, verdicts: dict) -> Claim:
    claim = functools.partial(Claim, post, SCALING_CLAIM)
    if (why := _unchanged(entry)) is not None:
        return claim(UNSURE, why, UNCHANGED_TODO)
    s = entry["overall"]["scaling"]
    size = f"update {pct(s.get('rel_delta'))} (median rel_delta)" if s.get("rel_delta") is not None else None
    numbers = f"median disp {num(s.get('disp'))} and fit_resid {num(s.get('fit_resid'))}"
    limits = f"the near-uniform thresholds {num(T.DISP_UNIFORM)} and {num(T.FIT_RESID_UNIFORM)}"
    tail = "; ".join(filter(None, [size, f"n = {s.get('n', 0)}"]))
    verdict = s.get("verdict")
    if verdict == "unavailable":
        return claim(UNSURE, "no scaling columns (disp, fit_resid) in this run",
                     missing_clause(verdicts.get("metrics"), ("disp", "fit_resid")))
    if verdict == "insufficient":
        return claim(UNSURE, f"too few changed matrices (n = {s.get('n', 0)}, a verdict needs {T.MIN_MATRICES})",
                     "analyse more matrices (fewer --layers/--kinds filters)")
    null = s.get("null") or {}
    reference = _scaling_reference(post, s, verdicts)
    if verdict == "non-uniform":
        return claim(FAILS, f"{numbers}, not both below {limits}; {tail}{reference}")
    if null.get("disp") is not None and not s["disp"] < null["disp"]:
        mine, theirs = apart(s["disp"], null["disp"])
        return claim(UNSURE, f"median disp {mine} and fit_resid {num(s.get('fit_resid'))}, below {limits}, but a "
                             f"random update of the same size is as uniform (disp {theirs}); {tail}",
                     "scaling this uniform is what any update of this size gives; a post trained longer (a "
                     "larger update) would tell")
    return claim(HOLDS, f"{numbers}, below {limits}; {tail}{reference}")


def _scaling_reference(post: str, s: dict, verdicts: dict) -> str:
    """The scaling claim's reference: the Gaussian null of the same size, else the control's numbers."""
    null = s.get("null") or {}
    if null.get("disp") is not None:
        mine, theirs = apart(s["disp"], null["disp"])
        return (f"; a random update of the same size: disp {theirs} (this post {mine}), fit_resid "
                f"{num(null.get('fit_resid'))}")
    control = verdicts.get("control")
    if post == control:
        return "; this is the control run"
    theirs = ((verdicts.get("posts", {}).get(control) or {}).get("overall") or {}).get("scaling") if control else None
    if theirs and theirs.get("disp") is not None:
        return (f"; {control}: disp {apart(s['disp'], theirs['disp'])[1]}, fit_resid {num(theirs.get('fit_resid'))} "
                f"(no random-update null in this run)")
    return "; no random-update null or control in this run"


def _rotation_claim(post: str, entry: dict, verdicts: dict) -> Claim:
    claim = functools.partial(Claim, post, ROTATION_CLAIM)
    if (why := _unchanged(entry)) is not None:
        return claim(UNSURE, why, UNCHANGED_TODO)
    r, contrast = entry["overall"]["rotation"], entry["overall"].get("contrast")
    verdict = r.get("verdict")
    if verdict == "unavailable":
        return claim(UNSURE, "no pairing null (z_pair, p_pair) in this run",
                     missing_clause(verdicts.get("metrics"), ("z_pair", "p_pair")))
    if verdict == "insufficient":
        return claim(UNSURE, f"too few usable matrices (n = {r.get('n', 0)}, a verdict needs {T.MIN_MATRICES})",
                     "analyse more matrices (fewer --layers/--kinds filters)")
    beyond = f"{share_words(r.get('bh_pair'), r.get('n_p_pair'))} beyond the pairing null"
    z = f"median z_pair {num(r.get('z_pair'))} ({ci_text(r)})"
    versus = contrast_clause(contrast, post == verdicts.get("control"))
    if verdict == "consistent":
        return claim(HOLDS, f"{beyond}, {z}; {versus}")
    if verdict == "weak":
        return claim(UNSURE, f"{beyond}, but the typical matrix is not clearly beyond it: {z}; {versus}",
                     f"more matrices (fewer --layers/--kinds filters) would narrow the interval; it must clear "
                     f"{num(T.Z_CI_LOW)}")
    if verdict == "partial":
        return claim(FAILS, f"only {beyond}{kinds_clause(entry)}, {z}; {versus}")
    return claim(FAILS, f"{beyond}, {z}; {versus}")
