from ..monitor.conftest import base_folder  # noqa: F401 - the saved tiny base, shared with the monitor tests
