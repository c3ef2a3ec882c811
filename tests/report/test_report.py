"""The report: one self-contained page and PNGs; rendered in a real headless Chromium."""

import os
import re
import shutil
import signal
import subprocess

import pytest
from typer.testing import CliRunner

from orthoscope.cli import app

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run_folder(family_run):
    """base against instruct and control, with eval.json and an intervention table (conftest's family_run)."""
    return family_run


def test_report_is_self_contained_with_every_figure_and_png(run_folder):
    page = (run_folder / "report.html").read_text()
    assert "<script src=" not in page and "<link" not in page  # plotly.js is inline: works offline
    for heading in ("Bottom line", "Where the weights moved", "Rotations against the pairing null", "Verdicts",
                    "Inputs and settings", "Singular-value scaling", "Ratio curves", "Interventions",
                    "Rotation consistency", "The control: delta symmetry", "Singular-vector overlaps",
                    "Intruder dimensions", "Evaluation", "Medians per kind"):
        assert re.search(f"<h2[^>]*>{heading}</h2>", page), heading
    # the pairing-null figure comes before incons, which misleads on its own
    assert page.index("fig-rotations-against-the-pairing-null") < page.index("fig-rotation-consistency")
    intruders = 'id="fig-intruder-dimensions"' in page
    assert intruders != ("No intruder dimensions: in all 42 matrices" in page)
    # two posts: update_cos.parquet is written and drawn as one post-against-post heatmap
    assert (run_folder / "update_cos.parquet").is_file() and 'id="fig-post-against-post"' in page
    assert page.count('class="plotly-graph-div"') == 10 + intruders
    for png in ("where_moved.png", "z_pair.png", "svsm.png", "consistency.png", "sym_frac.png", "ratio_curves.png"):
        assert (run_folder / "figures" / png).stat().st_size > 10_000


def test_report_command_on_a_folder_without_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no metrics.parquet in" in result.output


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium is not installed (Debian package `chromium`; .ci/run installs it)")
def test_report_renders_in_headless_chromium_without_console_errors(run_folder, tmp_path):
    import matplotlib.image

    url = (run_folder / "report.html").resolve().as_uri()
    tall = tmp_path / "tall.png"  # one screenshot: the first screen is its top 800 rows
    # the two browsers run at the same time (most of a headless start is waiting), each with its own profile
    dom = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                            "--v=0", "--virtual-time-budget=15000", "--dump-dom", url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    browsers = [dom]
    try:
        shot = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}",
                                 "--window-size=1280,3000", "--virtual-time-budget=15000", f"--screenshot={tall}", url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        browsers.append(shot)
        dom_stdout, dom_stderr = dom.communicate(timeout=120)
        console = [line for line in dom_stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
        assert console == []
        drawn = (run_folder / "report.html").read_text().count('class="plotly-graph-div"')
        assert dom_stdout.count('class="main-svg"') >= drawn >= 6  # plotly drew every figure
        assert "Scaling: near-uniform" in dom_stdout and "Bottom line" in dom_stdout
        shot_stderr = shot.communicate(timeout=120)[1]
        assert shot.returncode == 0, shot_stderr[-2000:]
        pixels = matplotlib.image.imread(tall)[..., :3]
        top = pixels[:800]
        assert (top.max(axis=2) < 0.3).mean() > 0.01  # the first screen is text (the bottom line), not blank
        red = (pixels[..., 0] > 0.6) & (pixels[..., 1] < 0.45) & (pixels[..., 2] < 0.45)
        blue = (pixels[..., 2] > 0.6) & (pixels[..., 0] < 0.45)
        assert red.sum() + blue.sum() > 2000  # the heatmaps' cells (rel_delta, z_pair) are on screen
    finally:  # a failed assertion or a timeout leaves no browser behind
        stop_browsers(browsers)


def stop_browsers(browsers: list[subprocess.Popen]) -> None:
    """Kill each browser still running, with its children (each was started in a session of its own)."""
    for browser in browsers:
        if browser.poll() is None:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.communicate()
