"""Regenerate docs/reliability.md from the reliability suite itself.

Runs `pytest tests/reliability` with a JUnit XML report and writes one table row per case
(its test id, area, outcome). tests/reliability/test_doc.py keeps the page equal to the
suite: a case added without rerunning this script fails there.

    python scripts/reliability_doc.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
INTRO = """# Reliability

What orthoscope promises for any input a user can give, and the suite that holds it to that.

- **One line or a correct result.** Every bad input or fault ends in exit 0 with correct results, or
  exit 2 with one line naming the file or option (`error: ...`), never a traceback (exit 1 is a bug).
  Ctrl-C exits 130 with "interrupted; rerun the same command to resume". A full disk, a read-only
  folder, a name or path too long and a link loop are one line naming the path (`errors.os_fault`,
  used by the CLI for every command); run-folder files are read through typed, bounded readers.
- **Nothing stale.** Every stored result carries 128-bit XXH3 hashes of the exact bytes of the base and
  post tensors it came from; a rerun recomputes exactly the matrices whose bytes changed. Experiment
  results are keyed on hashes of every weight byte of both models, the selected matrices and every
  option. Base-SVD cache entries carry a checksum checked on read: a damaged entry is a miss and is
  replaced.
- **Nothing torn.** Results, checkpoints and reports are written through a temporary file renamed
  into place; a killed run resumes to the same table as an uninterrupted one; `intervene` never
  leaves a partial checkpoint; two runs into one folder are refused by a lock.
- **Nothing non-finite.** Interventions refuse non-finite options and results before writing.
- **Nothing outside the model folder, no code.** Index entries and the side files `intervene`
  copies must stay inside the model folder (symlinks resolved); hub revisions and `refs/` files must
  name a snapshot inside the HF cache; pickles are read with `torch.load(weights_only=True)` only, and
  a file that holds code is refused as such; FIFOs and devices are refused before they are opened,
  wherever a regular file is expected (weights, configs, texts, `ppl:` files, run-folder files).
- **Nothing removed that orthoscope did not write.** The SVD cache removes only files named as its
  entries, regular files in a folder holding the `CACHEDIR.TAG` it writes; a run folder's lock file
  is never followed through a link.
- **Nothing believed that contradicts the weights.** Config numbers (heads, head_dim, block sizes)
  must be positive integers that fit the shapes they cut; a tensor stored twice (GGUF names, split
  parts, shards) is refused; adapter configs must agree with their factors.
- **Nothing guessed silently.** An adapter whose `adapter_config.json` names another base model than
  the one given is read with a note (its shape error names both models when it does not fit); a model
  that ties its lm_head to its embedding has that embedding paired with the other's lm_head, with a note;
  a numerically rank-deficient matrix gets NaN for every column read from its arbitrary singular vectors
  and a `note` in its row, in summary.json, the report and `orthoscope summary`.
- **Bounded work.** Reads of JSON, texts and headers are bounded; patterns from adapter configs match
  under a time limit; a training block longer than the model's context is refused.
- **What reaches the terminal is what was written.** Names from checkpoints and paths are never read
  as rich markup; control characters (ANSI escapes) are shown as escapes, in the error line too.
- **Fuzzed.** `test_fuzz` feeds seeded random corruptions of safetensors headers, GGUF headers and
  run-folder files to the CLI (300 inputs; `ORTHOSCOPE_FUZZ_ROUNDS` for more): exit 0 or one line and
  exit 2, never a traceback or a hang.

The table below is written by `python scripts/reliability_doc.py` from a run of
`pytest tests/reliability`; `tests/reliability/test_doc.py` fails when it no longer lists exactly
the suite's cases.
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability",
                        f"--junitxml={report}", "--deselect", "tests/reliability/test_doc.py"], cwd=ROOT, check=False)
        rows = []
        for case in ET.parse(report).getroot().iter("testcase"):
            module = case.get("classname", "").split(".")[-1]
            if module == "test_doc":
                continue
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "FAILED"
                elif child.tag == "skipped":
                    outcome = "skipped: " + (child.get("message") or "").replace("|", "/")[:80]
            rows.append((f"{module}::{case.get('name')}", module.removeprefix("test_"), outcome))
    counts = Counter(row[2].split(":")[0] for row in rows)
    areas = Counter(row[1] for row in rows)
    lines = [INTRO, f"**{len(rows)} cases**: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
             + " (" + ", ".join(f"{area} {n}" for area, n in sorted(areas.items())) + ").", "",
             "| case | area | outcome |", "|---|---|---|"]
    lines += [f"| `{case}` | {area} | {outcome} |" for case, area, outcome in rows]
    DOC.write_text("\n".join(lines) + "\n")
    print(f"{DOC}: {len(rows)} cases, {dict(counts)}")
    return 0 if not counts.get("FAILED") else 1


if __name__ == "__main__":
    sys.exit(main())
