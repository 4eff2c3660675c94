"""Shared fixtures: where the real data lives, and small planted datasets."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The folder of real data and legacy fixtures (``$SCVI_SHARED_DATA`` or ``../shared/data``)."""
    env = os.environ.get("SCVI_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``shared/data``; skips the test with a reason when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set SCVI_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture(scope="session")
def legacy_fixtures(shared_data: Path) -> Path:
    """``shared/data/legacy-fixtures``: the original package's loader fixtures."""
    path = shared_data / "legacy-fixtures"
    if not path.is_dir():
        pytest.skip(f"legacy fixtures not found at {path}")
    return path


@pytest.fixture(scope="session")
def real_data(shared_data: Path) -> Path:
    """``shared/data/real``: real count matrices (.h5ad)."""
    path = shared_data / "real"
    if not path.is_dir():
        pytest.skip(f"real count matrices not found at {path}")
    return path


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread():
    """Small test models train several times faster on one thread (no intra-op scheduling cost)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _scvi_seed():
    """Every test starts from the same global seeds (library code itself never reseeds)."""
    import scvi

    scvi.set_seed(0)
    yield
