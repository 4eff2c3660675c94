"""Shared fixtures: where the real data lives, and small planted datasets."""
import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The folder of real data and legacy fixtures (``$SCVI_SHARED_DATA`` or ``../shared/data``)."""
    env = os.environ.get("SCVI_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def _tracked_test_files() -> set:
    """Test files committed to this repository (empty outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "tests"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {str((REPO_ROOT / line).resolve()) for line in out.splitlines() if line.endswith(".py")}


def pytest_collection_modifyitems(config, items):
    """Our own tests run with warnings as errors (keeping the ignores of setup.cfg); test files
    that are not part of the repository (e.g. suites written for scVI 0.6) keep pytest's default
    warning handling, as they had with the original package."""
    own_files = _tracked_test_files()
    ignores = [f for f in config.getini("filterwarnings") if not f.strip().startswith("error")]
    strict = pytest.mark.filterwarnings("error", *ignores)
    for item in items:
        if str(Path(str(item.fspath)).resolve()) in own_files:
            # prepended: the test's own filterwarnings marks still take precedence
            item.add_marker(strict, append=False)


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
