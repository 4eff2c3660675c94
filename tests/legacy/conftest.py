"""Fixtures of the compatibility suite: the original scVI 0.6.8 tests run against our package.

Ported from scVI 0.6.8 (``conftest.py``, MIT licence, Copyright (c) 2020 Romain Lopez, Adam Gayoso,
Galen Xing, Yosef Lab). What changed:

- ``save_path`` is a temporary copy of the legacy fixture folder found through the ``legacy_fixtures``
  fixture of ``tests/conftest.py`` (``$SCVI_SHARED_DATA`` or ``../shared/data``), instead of a copy of
  ``tests/data`` of the working directory; the tests skip with a reason when it is absent. The legacy
  fixture also deleted pytest's whole base temp folder on teardown; pytest cleans it itself.
- The legacy dataset tests open ``"tests/data"`` relative to the repository root they ran from:
  ``legacy_root`` runs each of them from a temporary root whose ``tests/data`` is that same copy.
- Nothing may download: every test runs with ``$SCVI_DATA_MIRROR`` pointing to an empty folder, so a
  loader that does not find its file in ``save_path`` fails with a clear error instead of reaching the
  internet. Tests that relied on a download use the local HTTP mirror of ``tests/dataset/_mirror_server.py``.
- ``--model_fit`` is registered only when no other conftest did.
"""
import shutil
import sys
from pathlib import Path

import pytest

# The local mirror serving the legacy fixture files under their original URLs (shared with tests/dataset).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataset"))
from _mirror_server import mirror, mirror_server  # noqa: E402,F401 - fixtures


def pytest_addoption(parser):
    try:
        parser.addoption(
            "--model_fit",
            action="store_true",
            default=False,
            dest="model_fit",
            help="Option to run full training model for test_model_fit",
        )
    except ValueError:  # already registered
        pass


@pytest.fixture(scope="session")
def legacy_root(tmp_path_factory, legacy_fixtures) -> Path:
    """A temporary 'repository root' whose ``tests/data`` is a writable copy of the legacy fixtures."""
    root = tmp_path_factory.mktemp("legacy_root")
    shutil.copytree(legacy_fixtures, root / "tests" / "data")
    return root


@pytest.fixture(scope="session")
def save_path(legacy_root) -> str:
    """The legacy fixture: a temporary copy of the fixture data, as a string ending with ``/``."""
    return str(legacy_root / "tests" / "data") + "/"


@pytest.fixture(scope="session")
def model_fit(request):
    return request.config.getoption("--model_fit")


@pytest.fixture(autouse=True)
def _offline(tmp_path_factory, monkeypatch):
    """Downloads go to an empty local mirror: they fail instead of reaching the internet."""
    empty = tmp_path_factory.getbasetemp() / "empty_mirror"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("SCVI_DATA_MIRROR", str(empty))
