"""What a reader of the report sees: the bottom line first, readable figures (no label over another, nothing
cut at 1024 px), a page small enough to mail, and evaluation numbers with n and intervals."""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control

from orthoscope.report.grids import RATIO_BINS
from orthoscope.verdicts.bottom import GLOSSARY, PAPER, bottom_line
from tests.report.test_pages import figure_data, figure_layout, figures
from tests.report.test_report import stop_browsers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHECK_JS = Path(__file__).with_name("layout_check.js")
MAX_BYTES = 1_500_000


@pytest.fixture(scope="module")
def page(family_run):
    return (family_run / "report.html").read_text()


@pytest.fixture(scope="module")
def figs(family_run):
    return figures(family_run)


WIDTHS = (1280, 1024)


@pytest.fixture(scope="module")
def layouts(family_run, tmp_path_factory) -> dict:
    """The page laid out by headless Chromium at each of WIDTHS x 800: layout_check.js's measurements by width.
    The browsers run at the same time (most of a headless start is waiting), each with its own profile."""
    profiles = tmp_path_factory.mktemp("chromium")
    page = (family_run / "report.html").read_text()
    browsers = {}
    try:
        for width in WIDTHS:
            probe = family_run / f"probe-{width}.html"
            probe.write_text(page.replace("</body>", f"<script>{CHECK_JS.read_text()}</script></body>"))
            browsers[width] = subprocess.Popen(
                [CHROMIUM, *FLAGS, f"--user-data-dir={profiles / f'profile-{width}'}", f"--window-size={width},800",
                 "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        return {width: measured(browser) for width, browser in browsers.items()}
    finally:  # a failed assertion or a timeout in one leaves no other browser behind
        stop_browsers(list(browsers.values()))


def measured(browser: subprocess.Popen) -> dict:
    stdout, stderr = browser.communicate(timeout=120)
    found = re.findall(r'<pre id="layout-check">(.*?)</pre>', stdout, re.S)
    assert found, stderr[-2000:]
    return json.loads(html.unescape(found[-1]))


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium is not installed (Debian package `chromium`; .ci/run installs it)")
@pytest.mark.parametrize("width", WIDTHS)
def test_no_label_covers_another_and_the_bottom_line_is_on_the_first_screen(family_run, page, width, layouts):
    layout = layouts[width]
    assert layout["figures"] == page.count('class="plotly-graph-div"') >= 8  # every figure was drawn
    assert layout["overlaps"] == []  # titles, subplot titles, axis titles, tick labels, legends, colour bars
    assert layout["outside"] == []  # nothing cut by its figure's frame or the window
    assert layout["page_overflow"] <= 0  # no sideways scrolling
    assert layout["bottom_line"]["bottom"] <= 800  # the whole bottom line on the first screen
    # the verdict tables wrap instead of scrolling their verdict column out of view (the wide numeric tables
    # scroll sideways, their key columns first)
    assert not {"verdict-overview", "verdict-table", "bottom-line", "evaluation"} & set(layout["clipped_tables"])


def test_bottom_line_names_the_paper_and_judges_each_claim_per_post(family_run, page):
    body = page[page.index("<body>"):]
    first = body.index("<section class='bottom'>")
    assert first < body.index('class="plotly-graph-div"') < body.index("<h2>Verdicts</h2>")
    assert html.escape(PAPER) in body[:first + 600]
    verdicts = json.loads((family_run / "summary.json").read_text())["verdicts"]
    claims = bottom_line(verdicts)
    assert {c.post for c in claims} == {"instruct", "control"} and len(claims) == 4
    section = body[first:body.index("</section>", first)]
    for claim in claims:  # each status next to its own sentence
        assert f"{html.escape(claim.status)}</span>{html.escape(claim.sentence)}" in section
    glossary = section[section.index("<details id='glossary'"):]
    assert all(f"<dt>{html.escape(term)}</dt>" in glossary for term in ("pairing null", "z_pair", "BH"))
    assert len(GLOSSARY) >= 3


def test_page_is_one_offline_file_under_the_size_limit(family_run, page):
    assert (family_run / "report.html").stat().st_size <= MAX_BYTES
    assert page.count("<script type=\"text/javascript\">/*! plotly.js") == 1  # plotly.js once, not per figure
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=['\"]?https?:", page)


def test_where_the_weights_moved_is_rel_delta_per_layer_and_kind_control_last(family_run, figs):
    table = pd.read_parquet(family_run / "metrics.parquet")
    heatmaps = figure_data(figs, "fig-where-the-weights-moved")
    assert [t["xaxis"] if "xaxis" in t else "x" for t in heatmaps] == ["x", "x2"]
    for trace, post in zip(heatmaps, ["instruct", "control"]):  # the control beside, last
        rows = table[table.post == post]
        expected = rows.pivot_table(index="layer", columns="kind", values="rel_delta")[trace["x"]] * 100
        np.testing.assert_allclose(np.asarray(trace["z"], dtype=float), expected.values, rtol=1e-12)
    layout = figure_layout(figs, "fig-where-the-weights-moved")
    median = 100 * table[table.post == "instruct"].rel_delta.median()
    assert f"instruct {median:.3g} %" in layout["title"]["text"]


def test_rotation_map_marks_exactly_the_bh_significant_matrices(family_run, figs):
    table = pd.read_parquet(family_run / "metrics.parquet")
    traces = figure_data(figs, "fig-rotations-against-the-pairing-null")
    for trace, post in zip(traces, ["instruct", "control"]):
        rows = table[(table.post == post) & table.p_pair.notna() & table.changed & ~table.at_noise_floor]
        significant = rows[false_discovery_control(rows.p_pair, method="bh") <= 0.05]
        marked = {(y, x) for i, y in enumerate(trace["y"]) for j, x in enumerate(trace["x"])
                  if trace["text"][i][j].endswith("*")}
        assert marked == set(zip(significant.layer, significant.kind))
        z = rows.pivot_table(index="layer", columns="kind", values="z_pair")[trace["x"]]
        np.testing.assert_allclose(np.asarray(trace["z"], dtype=float), z.values, rtol=1e-12)


def test_ratio_bands_are_the_median_and_quartiles_of_binned_ratios(family_run, figs):
    from orthoscope.report.data import load_run

    run = load_run(family_run)
    names = list(run.table[(run.table.post == "instruct") & (run.table.kind == "q")].name)
    per_matrix = []
    for _, name, x, y in run.ratio_curves(names):
        if _ == "instruct":
            bins = pd.Series(y).groupby(np.minimum((x * RATIO_BINS).astype(int), RATIO_BINS - 1)).median()
            per_matrix.append(bins.reindex(range(RATIO_BINS)).to_numpy())
    expected = np.nanmedian(np.vstack(per_matrix), axis=0)
    traces = [t for t in figure_data(figs, "fig-ratio-curves") if t.get("name") == "q" and t.get("mode") == "lines"]
    instruct = [t for t in traces if t.get("xaxis", "x") == "x"]
    assert len(instruct) == 1 and "fill" not in instruct[0]
    np.testing.assert_allclose(np.asarray(instruct[0]["y"], dtype=float), expected, rtol=1e-6)


def test_overlap_figure_shows_the_difference_it_is_chosen_for(family_run, page, figs):
    from orthoscope.report.data import load_run

    run = load_run(family_run)
    row = run.table[run.table.incons.notna()].sort_values("incons").iloc[-1]
    blocks = run.spectra(row.post, row["name"])
    traces = figure_data(figs, "fig-singular-vector-overlaps")
    difference = np.asarray(traces[5]["z"], dtype=float)  # second row, third panel: least consistent Q_U - Q_V
    np.testing.assert_allclose(difference, blocks["Q_U_block"] - blocks["Q_V_block"], atol=1e-6)
    assert f"matrix {row.incons:.3f}" in page


def test_evaluation_table_has_n_and_wilson_intervals_and_explains_the_second_number(page):
    section = page[page.index("<h2>Evaluation</h2>"):page.index("<h2>Intervention table</h2>")]
    assert "lab-facts (n = 100, Wilson 95 %)" in section and "ppl (blocks of 64 tokens)" in section
    assert "0.4 [0.31, 0.50]" in section  # 40 of 100: Wilson 0.309-0.498
    assert "instruct is evaluated twice in this run, with different protocols" in section
    assert "ppl 6.776 here, 8.06 in the intervention table&#x27;s post row: the same held-out text" in section
    assert "blocks of 64 tokens here and 128 tokens there" in section
    assert "lab-facts 0.40 on 100 problems here, 0.40 on the first 20 there" in section


def test_every_png_is_titled(family_run):
    import matplotlib.image

    pngs = sorted((family_run / "figures").glob("*.png")) + [family_run / "experiment" / "experiment.png"]
    names = {p.name for p in pngs}
    assert {"where_moved.png", "z_pair.png", "svsm.png", "ratio_curves.png", "sym_frac.png"} <= names
    for path in pngs:
        if not path.is_file():
            continue
        pixels = matplotlib.image.imread(path)[..., :3]
        top = pixels[: max(12, pixels.shape[0] // 25)]
        assert (top.max(axis=2) < 0.4).mean() > 0.002, path.name  # dark text in the top strip: a title


def test_evaluated_twice_states_both_protocols_when_the_model_cannot_be_matched(family_run):
    from orthoscope.report.data import load_run
    from orthoscope.report.tables import evaluated_twice

    run = load_run(family_run)
    run.experiment_key = {**run.experiment_key, "post": "a content hash the summary does not record"}
    note = html.unescape(evaluated_twice(run))
    assert "The intervention table's post row is scored with another protocol" in note
    assert "perplexity in blocks of 64 tokens here, 128 there (the same held-out text)" in note
    assert "accuracies on 100 problems here, the first 20 there" in note
    run.experiment_key = None  # no experiment key: nothing said
    assert evaluated_twice(run) == ""
