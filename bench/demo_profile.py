"""demo_profile: where `orthoscope demo` spends its CPU, in-process (each part timed on process time).

Runs `orthoscope demo -q` into a fresh folder with a fresh base-SVD cache (the experiment included),
then prints the CPU seconds of the demo's parts (a part includes what it calls; each is timed by a
wrapper around the function the demo calls, so the numbers carry no profiler overhead) and the
1-minute load average. The quiet time and the busy ratio are `bench/goals.py demo`; this says where
the seconds go. `--top N` also profiles the run with cProfile (which inflates Python-heavy parts,
the report and plotly, more than torch) and prints its N costliest functions.

    .venv/bin/python bench/demo_profile.py            # about 15 s of CPU
    .venv/bin/python bench/demo_profile.py --top 30   # also the 30 costliest functions
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

PARTS = [  # (label, module the demo calls it from, function name): the demo's steps as the code names them
    ("start-up (importing the CLI and these modules)", None, None),
    ("compare", "orthoscope.pipeline", "compare"),
    ("experiment", "orthoscope.experiment", "run_experiment"),
    ("  load the post model", "orthoscope.experiment.run", "load_for_scoring"),
    ("  patch the conditions' matrices", "orthoscope.experiment.run", "patch"),
    ("  perplexity", "orthoscope.experiment.run", "perplexity"),
    ("  greedy answers (lab tasks)", "orthoscope.experiment.run", "score_answers"),
    ("  attention entropy", "orthoscope.experiment.run", "attention_entropy"),
    ("  hidden states (CKA)", "orthoscope.experiment.run", "hidden_states"),
    ("  experiment.png", "orthoscope.experiment.plot", "plot_experiment"),
    ("report", "orthoscope.report", "write_report"),
    ("  PNG figures (matplotlib)", "orthoscope.report.build", "write_pngs"),
    ("  page (plotly figures, HTML)", "orthoscope.report.build", "_page_of"),
]


def timed(parts: list[tuple]) -> dict[str, float]:
    """Wrap each part's function where the demo looks it up; the dict fills with CPU seconds as they run."""
    seconds: dict[str, float] = {}
    for label, module, name in parts:
        if module is None:
            continue
        owner = importlib.import_module(module)
        function = getattr(owner, name)

        @functools.wraps(function)
        def wrapper(*args, _function=function, _label=label, **kwargs):
            started = time.process_time()
            try:
                return _function(*args, **kwargs)
            finally:
                seconds[_label] = seconds.get(_label, 0.0) + time.process_time() - started

        setattr(owner, name, wrapper)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=0, help="Also print the N costliest functions (cProfile).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="demo-profile-"))
    os.environ["ORTHOSCOPE_CACHE_DIR"] = str(work / "cache")
    sys.argv = ["orthoscope", "demo", "-q", "-o", str(work / "demo")]
    wall, cpu = time.perf_counter(), time.process_time()
    profile = cProfile.Profile(time.process_time) if args.top else None
    if profile:
        profile.enable()
    from orthoscope.cli import main as cli

    seconds = timed(PARTS)
    seconds[PARTS[0][0]] = time.process_time() - cpu
    try:
        cli()
    except SystemExit as done:
        if done.code:
            raise
    if profile:
        profile.disable()
    shutil.rmtree(work, ignore_errors=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"orthoscope demo (cold, experiment included): {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"[load {os.getloadavg()[0]:.2f}]{' (under cProfile)' if profile else ''}")
    for label, _, _ in PARTS:
        print(f"  {label:45s} {seconds.get(label, 0.0):6.2f} s CPU")
    print(f"  {'transformers imported':45s} {'yes' if 'transformers' in sys.modules else 'no'}")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
