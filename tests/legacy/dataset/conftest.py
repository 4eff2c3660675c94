"""The legacy dataset tests open ``"tests/data"`` relative to the repository root they ran from (see
``tests/legacy/conftest.py``): run each of them from the temporary root holding the fixture copy."""
import pytest


@pytest.fixture(autouse=True)
def _run_from_legacy_root(legacy_root, monkeypatch):
    monkeypatch.chdir(legacy_root)
