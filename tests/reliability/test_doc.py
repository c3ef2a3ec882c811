"""docs/reliability.md lists exactly the cases of this suite (its counts come from the suite)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def documented_cases() -> list[str]:
    text = (ROOT / "docs" / "reliability.md").read_text()
    return re.findall(r"^\| `([^`]+)` \|", text, flags=re.M)


def test_the_page_lists_every_case_of_the_suite_and_its_count(request):
    collected = {f"{Path(item.path).stem}::{item.name}" for item in request.session.items
                 if Path(item.path).parent == HERE and Path(item.path).stem != "test_doc"}
    documented = documented_cases()
    assert len(documented) == len(set(documented))
    modules = {p.stem for p in HERE.glob("test_*.py")} - {"test_doc"}
    if {case.split("::")[0] for case in collected} == modules:  # the whole suite was collected
        assert set(documented) == collected, "rerun: python scripts/reliability_doc.py"
    else:
        assert collected <= set(documented), "rerun: python scripts/reliability_doc.py"
    total = re.search(r"\*\*(\d+) cases\*\*", (ROOT / "docs" / "reliability.md").read_text())
    assert total and int(total.group(1)) == len(documented)
