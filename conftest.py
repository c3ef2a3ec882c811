"""What every doctest of src/ runs inside: tempfile's folder is a fresh temporary folder, removed after the
example, so examples that make folders (`tempfile.mkdtemp()`) leave nothing behind."""

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _doctest_temporary_folder(request, monkeypatch):
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="orthoscope-doctest-") as folder:
        monkeypatch.setattr(tempfile, "tempdir", folder)
        yield


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (the README's test command and CI do)")


def pytest_collection_modifyitems(config, items):
    """Without --slow, tests marked `slow` are deselected: `pytest` is the quick loop, `pytest --slow` everything."""
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
        config.hook.pytest_deselected(items=slow)
