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
