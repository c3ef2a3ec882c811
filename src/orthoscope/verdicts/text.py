"""Plain sentences from the verdict numbers: every number printed is a value of the verdicts dict."""

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


def _p(value) -> str:
    return num(value, 2)


def _ci(r: dict) -> str:
    ci = r.get("z_pair_ci")
    return "95% interval n/a" if not ci else f"95% interval {num(ci[0])} to {num(ci[1])}"


def scaling_sentence(s: dict) -> str:
    numbers = f"median a_geo {num(s['a_geo'])}, disp {num(s['disp'])}, fit_resid {num(s['fit_resid'])}; n = {s['n']}"
    verdict = s["verdict"]
    if verdict == "unavailable":
        return "Scaling: this run has no disp/fit_resid columns: no verdict on scaling."
    if verdict == "insufficient":
        return f"Scaling: too few changed matrices for a verdict (n = {s['n']} < {T.MIN_MATRICES}; {numbers})."
    if verdict == "uniform":
        text = (f"Scaling: near-uniform ({numbers}): one factor per matrix fits its singular values "
                f"(thresholds disp < {num(T.DISP_UNIFORM)} and fit_resid < {num(T.FIT_RESID_UNIFORM)})")
    else:
        text = (f"Scaling: not near-uniform ({numbers}): disp or fit_resid is over its threshold "
                f"(disp < {num(T.DISP_UNIFORM)}, fit_resid < {num(T.FIT_RESID_UNIFORM)})")
    null = s.get("null") or {}
    if null.get("disp") is not None:
        relation = "more uniform than" if s["disp"] < null["disp"] else "no more uniform than"
        text += (f"; the Gaussian null of the same size gives disp {num(null['disp'])}, fit_resid "
                 f"{num(null['fit_resid'])}: {relation} a random update")
    return text + "."


def rotation_sentence(r: dict, group: dict) -> str:
    verdict = r["verdict"]
    bh_pair = f"{num(r['bh_pair'])} of {r['n_p_pair']}"
    bh_gauss = f"{num(r['bh_gauss'])} of {r['n_p_gauss']}"
    z = f"median z_pair {num(r['z_pair'])} ({_ci(r)})"
    nulls = (f"median sym_frac {num(r['sym_frac'])} vs pairing null {num(r['sym_frac_pair_null'])} "
             f"and Gaussian null {num(r['sym_frac_null'])}")
    if verdict == "unchanged":
        if group["n_changed"] == 0:
            return f"Post identical to base: no matrix changed (n = {group['n']})."
        return (f"No matrix changed beyond the noise floor: {group['n_noise_floor']} of {group['n']} at the "
                f"noise floor, the others unchanged.")
    if verdict == "unavailable":
        return (f"Rotations: this run has no pairing null (no z_pair/p_pair: an older orthoscope; rerun compare); "
                f"median sym_frac {num(r['sym_frac'])} vs Gaussian null {num(r['sym_frac_null'])}.")
    if verdict == "insufficient":
        return (f"Rotations: too few usable matrices for a verdict (n = {r['n']} < {T.MIN_MATRICES}); "
                f"{z}; {nulls}.")
    if verdict == "consistent":
        return (f"Rotations: consistent beyond the pairing null: {bh_pair} matrices BH-significant "
                f"(q = {num(T.Q_BH)}), {z}; {nulls}.")
    if verdict == "weak":
        return (f"Rotations: weakly consistent: {bh_pair} matrices BH-significant under the pairing null "
                f"(q = {num(T.Q_BH)}) but the typical matrix is not clearly beyond it: {z}, lower end not above "
                f"{num(T.Z_CI_LOW)}; {nulls}.")
    if verdict == "partial":
        return (f"Rotations: consistent in a minority of matrices only: {bh_pair} BH-significant under the "
                f"pairing null (q = {num(T.Q_BH)}), {z}; {nulls}.")
    if verdict == "shape-only":
        return (f"Rotations: not beyond the pairing null: {bh_pair} BH-significant (q = {num(T.Q_BH)}), {z}; "
                f"{bh_gauss} are above the Gaussian null, so sym_frac exceeds it because of where the update sits, "
                f"not because left and right rotations agree; {nulls}.")
    return (f"Rotations: no sign of consistent rotations: {bh_pair} BH-significant under the pairing null and "
            f"{bh_gauss} under the Gaussian null (q = {num(T.Q_BH)}), {z}; {nulls}.")


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
    text = (f"Against {name}: median z_pair {num(c['z_pair'])} vs {num(c['z_pair_control'])} ({what} "
            f"{num(c['z_pair_diff'])}, permutation p = {_p(c['p_z_pair'])}, {pairs})")
    if "p_sym_frac" in c:
        text += (f"; median sym_frac {num(c['sym_frac'])} vs {num(c['sym_frac_control'])} "
                 f"(p = {_p(c['p_sym_frac'])})")
    ending = {"more": f"rotations more consistent than in {name}", "less": f"rotations less consistent than in {name}",
              "same": f"not distinguishable from {name} (p >= {num(T.ALPHA_CONTRAST)})"}[c["verdict"]]
    return f"{text}: {ending}."


def post_sentences(overall: dict) -> dict:
    """{"scaling", "rotation", "control"}: one sentence per claim for a whole post."""
    rotation = rotation_sentence(overall["rotation"], overall)
    if overall["rotation"]["verdict"] == "unchanged":
        return {"scaling": None, "rotation": rotation, "control": None}
    return {"scaling": scaling_sentence(overall["scaling"]), "rotation": rotation,
            "control": contrast_sentence(overall["contrast"])}


def group_sentence(kind: str, g: dict) -> str:
    """One line for one kind: the rotation verdict, its numbers, the scaling and the control contrast."""
    r, s, c = g["rotation"], g["scaling"], g["contrast"]
    if r["verdict"] == "unchanged":
        return f"{kind}: unchanged (n = {g['n']}, {g['n_noise_floor']} at the noise floor)."
    text = f"{kind}: {LABELS[r['verdict']]}"
    if r["n"]:
        text += f"; median z_pair {num(r['z_pair'])} ({_ci(r)}), {num(r['bh_pair'])} of {r['n_p_pair']} BH-significant"
    text += f"; a_geo {num(s['a_geo'])}, disp {num(s['disp'])} (n = {g['n_used']})"
    if c is not None and "p_z_pair" in c:
        text += f"; vs {c['control']}: z_pair difference {num(c['z_pair_diff'])}, p = {_p(c['p_z_pair'])}"
    return text + "."
