"""demo_profile: where `orthoscope demo` spends its CPU, in-process (cProfile on process time).

Runs `orthoscope demo -q` into a fresh folder with a fresh base-SVD cache (the experiment included),
then prints the CPU seconds of the demo's parts (cumulative: a part includes what it calls) and the
1-minute load average. The quiet time and the busy ratio are `bench/goals.py demo`; this says where
the seconds go. cProfile adds overhead to Python-heavy parts (the report, plotly) more than to torch.

    .venv/bin/python bench/demo_profile.py            # about a minute on a quiet machine
    .venv/bin/python bench/demo_profile.py --top 30   # also the 30 costliest functions
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

PARTS = [  # (label, file suffix, function name): the demo's steps as the code names them
    ("compare", "pipeline/run.py", "compare"),
    ("experiment", "experiment/run.py", "run_experiment"),
    ("  load the post model (transformers)", "evaluation/models.py", "load_model"),
    ("  patch the conditions' matrices", "interventions/apply.py", "patch"),
    ("  perplexity", "evaluation/perplexity.py", "perplexity"),
    ("  greedy answers (lab tasks)", "evaluation/exact_match.py", "generate"),
    ("  attention entropy", "evaluation/representations.py", "attention_entropy"),
    ("  hidden states (CKA)", "evaluation/representations.py", "hidden_states"),
    ("  experiment.png", "experiment/plot.py", "plot_experiment"),
    ("report", "report/build.py", "write_report"),
    ("  PNG figures (matplotlib)", "report/pngs.py", "write_pngs"),
    ("  intervention figure (plotly)", "report/figures.py", "experiment_figure"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=0, help="Also print the N costliest functions (cumulative).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="demo-profile-"))
    os.environ["ORTHOSCOPE_CACHE_DIR"] = str(work / "cache")
    sys.argv = ["orthoscope", "demo", "-q", "-o", str(work / "demo")]
    wall, cpu = time.perf_counter(), time.process_time()
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    from orthoscope.cli import main as cli

    try:
        cli()
    except SystemExit as done:
        if done.code:
            raise
    profile.disable()
    shutil.rmtree(work, ignore_errors=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = pstats.Stats(profile)
    print(f"orthoscope demo (cold, experiment included): {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"[load {os.getloadavg()[0]:.2f}]")
    for label, suffix, function in PARTS:
        rows = [row for (file, _, name), row in stats.stats.items() if name == function and file.endswith(suffix)]
        seconds = sum(row[3] for row in rows)  # cumulative time
        print(f"  {label:40s} {seconds:6.2f} s CPU")
    if args.top:
        stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
