"""The package layout is the architecture: data flows one way, no package imports one above it.

Order (low -> high): errors/_version, tuning, metrics and kernels (peers: neither imports the other),
sources, architectures, verdicts, pipeline,
evaluation, interventions, monitor, integrations, lab, experiment, report, cli. docs/architecture.md
explains it; a new import that goes upward fails here.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "orthoscope"
LAYERS = ["_lazy", "errors", "_version", "tuning", "metrics", "kernels", "sources", "architectures", "verdicts",
          "pipeline", "evaluation", "interventions", "monitor", "integrations", "lab", "experiment", "report", "cli"]
# the same level (no edge between them in either direction): kernels are linear algebra, metrics the
# statistics on its results; the pipeline joins them (precision choice, metric sets, the stages)
PEERS = {("errors", "_version"), ("metrics", "kernels")}


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "orthoscope":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("orthoscope.")}
    return found


def test_no_upward_import():
    upward = []
    for path in ROOT.rglob("*.py"):
        pkg = package_of(path)
        if pkg not in LAYERS:
            continue
        for target in imported_packages(path) - {pkg}:
            if target in LAYERS and LAYERS.index(target) > LAYERS.index(pkg):
                upward.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not upward, upward


def test_peers_do_not_import_each_other():
    crossing = []
    for path in ROOT.rglob("*.py"):
        pkg = package_of(path)
        for a, b in PEERS:
            if pkg in (a, b) and ({a, b} - {pkg}) & imported_packages(path):
                crossing.append(f"{path.relative_to(ROOT)} imports {({a, b} - {pkg}).pop()}")
    assert not crossing, crossing


def test_every_package_has_a_layer():
    packages = {package_of(p) for p in ROOT.rglob("*.py")} - {"__init__", "__main__"}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))
