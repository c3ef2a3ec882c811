"""The verdicts for people: lines for the terminal, an HTML fragment for the report's first screen."""

from __future__ import annotations

import html

from orthoscope.verdicts.text import LABELS, num, p_text, pct

CLAIMS = ("scaling", "rotation", "control")
FOLD_POSTS = 4
"""With more posts than this (a checkpoint series) each post's sentences fold under its title."""


def verdict_lines(verdicts: dict, per_kind: bool = True) -> list[str]:
    """One plain sentence per claim and post, numbers included; then one line per kind.

    >>> verdict_lines({"posts": {}, "notes": ["empty table: nothing to judge"]})
    ['note: empty table: nothing to judge']
    """
    lines = [f"note: {note}" for note in verdicts.get("notes", [])]
    for post, entry in verdicts.get("posts", {}).items():
        overall = entry["overall"]
        step = f", step {entry['step']}" if entry.get("step") is not None else ""
        lines.append(f"{post}{step}: {overall['n']} matrices, {overall['n_changed']} changed, "
                     f"{overall['n_noise_floor']} at the noise floor")
        lines += [f"  {entry['sentences'][claim]}" for claim in CLAIMS if entry["sentences"].get(claim)]
        if per_kind and overall["n_used"]:
            lines += [f"    {kind['sentence']}" for kind in entry["kinds"].values()]
    return lines


def verdict_html(verdicts: dict) -> str:
    """The verdicts as an HTML fragment: an overview row per post, its sentences, a table per kind.

    >>> verdict_html({"posts": {}, "notes": ["empty table: nothing to judge"]})[-57:]
    'No verdicts: empty table: nothing to judge.</p></section>'
    """
    if not verdicts or not verdicts.get("posts"):
        notes = verdicts.get("notes", []) if verdicts else []
        return ("<section class='verdicts'><h2>Verdicts</h2><p class='note'>No verdicts: "
                + html.escape("; ".join(notes) or "this run has none") + ".</p></section>")
    parts = ["<section class='verdicts'><h2>Verdicts</h2>"]
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in verdicts.get("notes", [])]
    parts.append(_overview(verdicts))
    folded = len(verdicts["posts"]) > FOLD_POSTS  # a long series: the overview table leads, posts fold
    for post, entry in verdicts["posts"].items():
        o = entry["overall"]
        step = f" (step {entry['step']})" if entry.get("step") is not None else ""
        title = (f"{html.escape(post)}{step}: {o['n']} matrices, {o['n_changed']} changed, "
                 f"{o['n_noise_floor']} at the noise floor")
        parts.append(f"<details><summary><b>{title}</b></summary>" if folded else f"<h3>{title}</h3>")
        parts.append("<ul>")
        parts += [f"<li>{html.escape(entry['sentences'][c])}</li>" for c in CLAIMS if entry["sentences"].get(c)]
        parts.append("</ul>")
        if o["n_used"]:
            parts.append(f"<details><summary>numbers per kind ({len(entry['kinds'])} kinds)</summary>"
                         f"{_kind_table(entry)}</details>")
        if folded:
            parts.append("</details>")
    t = verdicts.get("thresholds", {})
    parts.append(f"<p class='note'>Matrices count when changed and above the noise floor. BH: Benjamini-Hochberg at "
                 f"q = {t.get('q_bh')} over the matrices of a post (a kind counts the post's discoveries); "
                 "interval: bootstrap 95% of the median z_pair "
                 f"({t.get('bootstrap_resamples')} resamples); control p: sign-flip permutation of paired matrices "
                 f"({t.get('permutations')} draws), Holm-adjusted across the run's post-level contrasts and, "
                 "separately, its per-kind ones; one training run per post. "
                 f"Thresholds: {html.escape(_thresholds(t))}.</p></section>")
    return "\n".join(parts)


HEAD = ("kind", "n used", "a_geo", "disp", "fit_resid", "sym_frac", "pairing null", "Gaussian null",
        "median z_pair [95%]", "BH p_pair", "BH p_gauss", "vs control: z_pair diff (p, Holm)", "rotations")


SCALING_LABELS = {"uniform": "near-uniform", "non-uniform": "not uniform", "insufficient": "too few matrices",
                  "unavailable": "n/a"}
CONTRAST_LABELS = {"more": "more consistent", "less": "less consistent", "same": "not distinguishable",
                   "insufficient": "too few matrices", "unavailable": "n/a"}


def _overview(verdicts: dict) -> str:
    """One row per post: the three verdicts and the numbers they rest on most."""
    rows = []
    for post, entry in verdicts["posts"].items():
        o = entry["overall"]
        s, r, c = o["scaling"], o["rotation"], o["contrast"]
        if r["verdict"] == "unchanged":
            cells = (post, f"{o['n_used']} of {o['n']}", "unchanged", "", LABELS["unchanged"], "", "")
        else:
            ci = r.get("z_pair_ci")
            z = f"{num(r['z_pair'])} [{num(ci[0])}, {num(ci[1])}]" if ci else num(r["z_pair"])
            versus = (f"{CONTRAST_LABELS[c['verdict']]}"
                      + (f": {num(c['z_pair_diff'])} ({p_text(c)})" if "p_z_pair" in c else "")
                      if c else "")
            cells = (post, f"{o['n_used']} of {o['n']}",
                     f"{SCALING_LABELS[s['verdict']]} (a_geo {num(s['a_geo'])}, disp {num(s['disp'])})",
                     z, LABELS[r["verdict"]], _bh(r["bh_pair"], r["n_p_pair"]), versus)
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>")
    control = verdicts.get("control")
    head = ("post", "matrices used", "scaling", "median z_pair [95%]", "rotations", "BH p_pair",
            f"vs {control}: z_pair diff (p, Holm)" if control else "vs control")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return ("<div class='wide'><table class='verdict-overview'><tr>" + header
            + "</tr>" + "".join(rows) + "</table></div>")


def _bh(count, n) -> str:
    return "n/a" if count is None else f"{count} of {n}"


def _kind_table(entry: dict) -> str:
    rows = [("all", entry["overall"])] + list(entry["kinds"].items())
    body = []
    for kind, g in rows:
        s, r, c = g["scaling"], g["rotation"], g["contrast"]
        ci = r.get("z_pair_ci")
        z = f"{num(r['z_pair'])} [{num(ci[0])}, {num(ci[1])}]" if ci else num(r["z_pair"])
        contrast = f"{num(c['z_pair_diff'])} ({p_text(c)})" if c and "p_z_pair" in c else ""
        cells = (kind, f"{g['n_used']} of {g['n']}", num(s["a_geo"]), num(s["disp"]), num(s["fit_resid"]),
                 num(r["sym_frac"]), num(r["sym_frac_pair_null"]), num(r["sym_frac_null"]), z,
                 _bh(r["bh_pair"], r["n_p_pair"]), _bh(r["bh_gauss"], r["n_p_gauss"]), contrast,
                 LABELS[r["verdict"]])
        style = " style='font-weight:bold'" if kind == "all" else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells[:-1])
                    + f"<td class=t>{html.escape(cells[-1])}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in HEAD)
    return f"<div class='wide'><table class='verdict-table'><tr>{head}</tr>{''.join(body)}</table></div>"


def _thresholds(t: dict) -> str:
    return (f"consistent rotations when at least {t.get('consistent_share')} of the matrices are BH-significant "
            f"under the pairing null and the interval's lower end exceeds {t.get('z_ci_low')}; a minority from "
            f"{t.get('min_significant')} matrices; near-uniform scaling when disp < {t.get('disp_uniform')} and "
            f"fit_resid < "
            f"{t.get('fit_resid_uniform')}; no verdict under {t.get('min_matrices')} matrices; control contrast "
            f"significant at Holm-adjusted p < {t.get('alpha_contrast')}")


COMPACT_HEAD = ("kind", "n", "a_geo", "disp", "rel_delta", "sym_frac", "z_pair", "BH")
"""The columns that carry the answer, in claim order: scaling, update size, rotations (`BH`: matrices
beyond the pairing null after Benjamini-Hochberg, of those with a p-value)."""


def compact_rows(entry: dict) -> list[tuple[str, ...]]:
    """One row per kind and one for the whole post ('all'), from a post's verdicts: the numbers the
    bottom line rests on (usable matrices only), short enough for 80 columns.

    >>> g = {"n": 3, "n_changed": 3, "n_noise_floor": 0, "n_used": 3,
    ...      "scaling": {"a_geo": 1.00687, "disp": 0.0163, "rel_delta": 0.0015},
    ...      "rotation": {"sym_frac": 0.52, "z_pair": 0.466, "bh_pair": 1, "n_p_pair": 3, "verdict": "none"}}
    >>> compact_rows({"overall": g, "kinds": {"q": g}})[0]
    ('q', '3', '1.0069', '0.016', '0.15 %', '0.5200', '0.47', '1/3')
    """
    groups = [*entry["kinds"].items(), ("all", entry["overall"])]
    changed = [(kind, g) for kind, g in groups if g["rotation"].get("verdict") != "unchanged"]
    columns = {name: [fixed(g[part].get(name), decimals) for _, g in changed]
               for part, name, decimals in (("scaling", "a_geo", 4), ("rotation", "sym_frac", 4),
                                            ("rotation", "z_pair", 2))}
    rows, i = [], 0
    for kind, g in groups:
        s, r = g["scaling"], g["rotation"]
        if r.get("verdict") == "unchanged":
            rows.append((kind, str(g["n_used"]), "unchanged", "", "", "", "", ""))
            continue
        bh = "n/a" if r.get("bh_pair") is None else f"{r['bh_pair']}/{r['n_p_pair']}"
        rows.append((kind, str(g["n_used"]), columns["a_geo"][i], _short(s.get("disp")), pct(s.get("rel_delta")),
                     columns["sym_frac"][i], columns["z_pair"][i], bh))
        i += 1
    return rows


def fixed(value, decimals: int) -> str:
    """`value` at `decimals` places; "n/a" for None (a number the verdicts could not give).

    >>> fixed(1.00687, 4), fixed(None, 2)
    ('1.0069', 'n/a')
    """
    return "n/a" if value is None else f"{value:.{decimals}f}"


def _short(value) -> str:
    return "n/a" if value is None else f"{value:.2g}"
