"""The tutorial notebooks (``notebooks/*.ipynb``, chapter 2 of the scVI 0.6.3 documentation).

Each notebook is executed with nbclient in its quick mode (``SCVI_NOTEBOOK_TEST_MODE=1``, read in
its first cell), offline (``SCVI_OFFLINE=1``: the real substitutes and the fixture mirror are used).
The saved notebooks are also checked: they are the full runs, with outputs and no errors.
"""
import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# Notebooks whose full run is blocked by a known package bug (the saved copy is then unexecuted).
BLOCKED_FULL_RUNS: dict = {}  # name -> reason, for a notebook whose full run is known to fail

# name -> (timeout in seconds for the quick run, needs scanpy, slow)
NOTEBOOK_SPECS = {
    "data_loading": (300, False, False),
    "scVI_introduction": (600, True, True),
    "totalVI": (600, True, True),
    "harmonization": (600, True, True),
    "scanpy_pbmc3k": (600, True, True),
    "AutoZI_tutorial": (300, False, False),
    "gimvi_tutorial": (300, False, False),
    "linear_decoder": (600, True, True),
    "autotune_advanced": (900, False, True),
}


def _params():
    for name, (timeout, needs_scanpy, slow) in NOTEBOOK_SPECS.items():
        marks = [pytest.mark.data] + ([pytest.mark.slow] if slow else [])
        yield pytest.param(name, timeout, needs_scanpy, id=name, marks=marks)


def _read(name: str):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(str(NOTEBOOKS / f"{name}.ipynb"), as_version=4)


def test_every_tutorial_has_a_notebook():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NOTEBOOK_SPECS)


@pytest.mark.parametrize("name", sorted(NOTEBOOK_SPECS))
def test_first_cell_sets_test_mode_and_names_the_data(name):
    first = _read(name).cells[0]
    assert first.cell_type == "code"
    assert "test_mode = False" in first.source
    assert "notebook_test_mode(test_mode)" in first.source
    assert "# DATA." in first.source


@pytest.mark.parametrize("name", sorted(NOTEBOOK_SPECS))
def test_saved_notebook_is_a_full_run_without_errors(name):
    """The committed notebook was executed in full mode: every code cell ran, none raised."""
    notebook = _read(name)
    code = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]
    not_run = [i for i, cell in enumerate(code) if cell.get("execution_count") is None]
    if not_run and name in BLOCKED_FULL_RUNS:
        pytest.xfail(BLOCKED_FULL_RUNS[name])
    assert not not_run, f"{name}: code cells {not_run} have not been executed"
    errors = [out for cell in code for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{name}: saved outputs contain errors: {[e.get('ename') for e in errors]}"
    printed = "".join(out.get("text", "") for out in code[0].get("outputs", []))
    assert "test_mode: False" in printed, f"{name}: the saved run is not the full (test_mode = False) run"


@pytest.mark.parametrize("name, timeout, needs_scanpy", list(_params()))
def test_notebook_runs_in_quick_mode(name, timeout, needs_scanpy, shared_data, monkeypatch, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if needs_scanpy:
        pytest.importorskip("scanpy", reason=f"{name} needs the optional scanpy extra")
    notebook = _read(name)
    monkeypatch.setenv("SCVI_NOTEBOOK_TEST_MODE", "1")
    monkeypatch.setenv("SCVI_OFFLINE", "1")
    monkeypatch.setenv("SCVI_SHARED_DATA", str(shared_data))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    client = nbclient.NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    printed = "".join(out.get("text", "") for out in notebook.cells[0].get("outputs", []))
    assert "test_mode: True" in printed
