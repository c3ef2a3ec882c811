"""The report's first screen: the paper's claims per post (holds / does not hold / can't tell) and a glossary.

The words and numbers come from `orthoscope.verdicts.bottom` (one owner of the bottom line); this
module only lays them out: one row per post, one cell per claim, the status first.

>>> from orthoscope.verdicts.bottom import Claim
>>> html_ = bottom_line_html([Claim("instruct", "Consistent rotations", "does not hold", "1 of 21 beyond")], None)
>>> "He &amp; Cao, arXiv 2509.17866" in html_ and "class='status fails'" in html_
True
"""

from __future__ import annotations

import html

from orthoscope.verdicts.bottom import CLAIMS, FAILS, GLOSSARY, HOLDS, PAPER, Claim

STATUS_CLASS = {HOLDS: "holds", FAILS: "fails"}
"""CSS class of each status (any other status, "can't tell", is drawn as 'unsure')."""

STYLE = """
.bottom{border:1px solid #ccc;border-radius:6px;padding:.4em 1em .6em;margin:.6em 0 1em;background:#fcfcfc}
.bottom h2{margin:.2em 0 .1em;border:none;font-size:1.25em}
.bottom table{width:100%;table-layout:fixed;font-size:13px}
.bottom td,.bottom th{white-space:normal;text-align:left;vertical-align:top;padding:4px 8px}
.bottom th.post{width:9em}
.status{display:inline-block;font-weight:bold;padding:0 6px;border-radius:3px;margin-right:.3em;color:#fff}
.status.holds{background:#2e7d32} .status.fails{background:#b3261e} .status.unsure{background:#8a6d00}
.todo{color:#555;font-style:italic} .glossary dt{font-weight:bold;margin-top:.3em} .glossary dd{margin-left:1.5em}
"""


def bottom_line_html(claims: list[Claim], control: str | None, notes: list[str] = ()) -> str:
    """The bottom line as a table: a row per post, a cell per claim with its status, sentence and what to run."""
    head = (f"<h2 id='bottom-line'>Bottom line</h2><p class='note'>Does post-training do what "
            f"{html.escape(PAPER)} claims? Each claim per post: <b>holds</b>, <b>does not hold</b> or "
            f"<b>can't tell</b>, with the number it rests on and n (matrices). Words: "
            f"<a href='#glossary'>glossary</a>.</p>")
    if not claims:
        why = "; ".join(notes) or "no post to judge"
        return f"<section class='bottom'>{head}<p>No claims judged: {html.escape(why)}.</p>{glossary_html()}</section>"
    posts = list(dict.fromkeys(c.post for c in claims))
    names = [n for n in CLAIMS if any(c.claim == n for c in claims)] + \
        [n for n in dict.fromkeys(c.claim for c in claims) if n not in CLAIMS]
    rows = []
    for post in posts:
        marked = post == control and "control" not in post
        label = html.escape(post) + (" <span class='note'>(control run)</span>" if marked else "")
        cells = [_cell(next((c for c in claims if c.post == post and c.claim == name), None)) for name in names]
        rows.append(f"<tr><th class='post'>{label}</th>{''.join(cells)}</tr>")
    header = "<tr><th class='post'>post</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    return (f"<section class='bottom'>{head}<table class='bottom-line'>{header}{''.join(rows)}</table>"
            f"{glossary_html()}</section>")


def _cell(claim: Claim | None) -> str:
    if claim is None:
        return "<td></td>"
    kind = STATUS_CLASS.get(claim.status, "unsure")
    todo = f"<br><span class='todo'>To decide: {html.escape(claim.todo)}</span>" if claim.todo else ""
    return (f"<td><span class='status {kind}'>{html.escape(claim.status)}</span>"
            f"{html.escape(claim.sentence)}{todo}</td>")


def glossary_html() -> str:
    """The plain-language glossary, folded (one click away)."""
    entries = "".join(f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}</dd>" for term, text in GLOSSARY.items())
    return f"<details id='glossary' class='glossary'><summary>Glossary</summary><dl>{entries}</dl></details>"
