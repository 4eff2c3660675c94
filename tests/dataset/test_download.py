"""Download machinery: mirror, streaming into .part files, errors, DownloadableDataset, safe pickles."""
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _mirror_server import mirror, mirror_server, mirror_path  # noqa: F401 - fixtures

import scvi.dataset._download as download_module
from scvi.dataset import DownloadableDataset, DownloadError, get_data_mirror, set_data_mirror
from scvi.dataset._download import _download, mirrored_url
from scvi.dataset._safe_pickle import UnsafePickleError, safe_load, safe_loads

CORTEX_URL = "https://storage.googleapis.com/linnarsson-lab-www-blobs/blobs/cortex/expression_mRNA_17-Aug-2014.txt"
HEMATO_URL = (
    "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSM2388072&format=file&"
    "file=GSM2388072%5Fbasal%5Fbone%5Fmarrow%2Eraw%5Fumifm%5Fcounts%2Ecsv%2Egz"
)


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------------ mirror
@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://host.org/a/b/file.txt", "http://mirror:8000/base/host.org/a/b/file.txt"),
        ("ftp://ftp.ncbi.nlm.nih.gov/geo/x.csv.gz", "http://mirror:8000/base/ftp.ncbi.nlm.nih.gov/geo/x.csv.gz"),
        ("https://h.org/geo/download/?acc=1&f=a%5Fb", "http://mirror:8000/base/h.org/geo/download/?acc=1&f=a%5Fb"),
    ],
)
def test_mirrored_url_maps_host_and_path_under_the_base_url(url, expected):
    assert mirrored_url(url, "http://mirror:8000/base/") == expected
    assert mirrored_url(url, "http://mirror:8000/base") == expected


def test_mirrored_url_of_a_local_folder_is_a_file_url(tmp_path):
    assert mirrored_url("https://host.org/a/f.txt", str(tmp_path)) == (tmp_path / "host.org/a/f.txt").as_uri()


def test_without_mirror_the_original_url_is_used(monkeypatch):
    monkeypatch.delenv("SCVI_DATA_MIRROR", raising=False)
    set_data_mirror(None)
    assert get_data_mirror() is None
    assert mirrored_url(CORTEX_URL) == CORTEX_URL


def test_module_setting_takes_precedence_over_the_environment(monkeypatch):
    monkeypatch.setenv("SCVI_DATA_MIRROR", "/from/env")
    set_data_mirror(None)
    assert get_data_mirror() == "/from/env"
    try:
        set_data_mirror("http://from.code")
        assert get_data_mirror() == "http://from.code"
    finally:
        set_data_mirror(None)


def test_set_data_mirror_rejects_non_paths():
    with pytest.raises(TypeError, match="`mirror` must be None, a folder or a base URL"):
        set_data_mirror(42)


# ---------------------------------------------------------------------------------------- download
def test_download_fetches_the_file_through_the_mirror_once(mirror, tmp_path, legacy_fixtures):
    _download(CORTEX_URL, tmp_path, "expression.bin")
    assert (tmp_path / "expression.bin").read_bytes() == (legacy_fixtures / "expression.bin").read_bytes()
    _download(CORTEX_URL, tmp_path, "expression.bin")  # already there: not downloaded again
    assert mirror.requested(CORTEX_URL) == 1
    assert _leftovers(tmp_path) == ["expression.bin"]


def test_download_keeps_the_query_string_of_the_url(mirror, tmp_path, legacy_fixtures):
    _download(HEMATO_URL, tmp_path, "counts.csv.gz")
    expected = (legacy_fixtures / "HEMATO/bBM.raw_umifm_counts.csv.gz").read_bytes()
    assert (tmp_path / "counts.csv.gz").read_bytes() == expected


def test_mirror_from_the_environment_variable(mirror_server, monkeypatch, tmp_path):
    set_data_mirror(None)
    monkeypatch.setenv("SCVI_DATA_MIRROR", mirror_server.url)
    _download(CORTEX_URL, tmp_path, "expression.bin")
    assert (tmp_path / "expression.bin").stat().st_size > 0


def test_mirror_in_a_local_folder(monkeypatch, tmp_path, legacy_fixtures):
    monkeypatch.delenv("SCVI_DATA_MIRROR", raising=False)
    local = tmp_path / "mirror" / "storage.googleapis.com/linnarsson-lab-www-blobs/blobs/cortex"
    local.mkdir(parents=True)
    shutil.copy(legacy_fixtures / "expression.bin", local / "expression_mRNA_17-Aug-2014.txt")
    set_data_mirror(tmp_path / "mirror")
    try:
        _download(CORTEX_URL, tmp_path / "out", "expression.bin")
        with pytest.raises(DownloadError, match="https://example.org/absent.txt"):
            _download("https://example.org/absent.txt", tmp_path / "out", "absent.txt")
    finally:
        set_data_mirror(None)
    assert (tmp_path / "out/expression.bin").read_bytes() == (legacy_fixtures / "expression.bin").read_bytes()
    assert _leftovers(tmp_path / "out") == ["expression.bin"]


def test_http_404_raises_naming_the_url_and_leaves_no_file(mirror, tmp_path):
    url = "https://example.org/missing/file.loom"
    with pytest.raises(DownloadError, match=r"https://example\.org/missing/file\.loom.*HTTP error 404"):
        _download(url, tmp_path, "file.loom")
    assert _leftovers(tmp_path) == []


def test_interrupted_download_raises_and_leaves_no_partial_file(mirror, tmp_path, legacy_fixtures):
    url = "https://example.org/interrupted/expression.bin"
    mirror.add(url, legacy_fixtures / "expression.bin")
    mirror.truncate.add(mirror_path(url))
    with pytest.raises(DownloadError, match=r"interrupted/expression\.bin.*received \d+ bytes but Content-Length"):
        _download(url, tmp_path, "expression.bin")
    assert _leftovers(tmp_path) == []  # neither the file nor its .part


def test_download_timeout_raises_naming_the_url(mirror, tmp_path, legacy_fixtures, monkeypatch):
    url = "https://example.org/slow/expression.bin"
    mirror.add(url, legacy_fixtures / "expression.bin")
    mirror.stall[mirror_path(url)] = 1.0
    monkeypatch.setattr(download_module, "DOWNLOAD_TIMEOUT", 0.2)
    with pytest.raises(DownloadError, match=r"slow/expression\.bin.*timed out after 0\.2 s"):
        _download(url, tmp_path, "expression.bin")
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- DownloadableDataset
class _TextLines(DownloadableDataset):
    """Minimal concrete dataset: one cell per line, one gene per tab-separated value."""

    def populate(self):
        rows = [line.split("\t")[2:] for line in Path(self._file_path()).read_text().splitlines()[11:]]
        self.populate_from_data(np.asarray(rows, dtype=np.int64).T)


def test_delayed_populating_downloads_without_populating(mirror, tmp_path):
    dataset = _TextLines(urls=CORTEX_URL, filenames="expression.bin", save_path=tmp_path, delayed_populating=True)
    assert (tmp_path / "expression.bin").exists()
    assert dataset.X is None and dataset.nb_cells == 0
    dataset.populate()
    assert dataset.X.shape == (62, 63)
    assert dataset.save_path == os.path.abspath(tmp_path)
    assert dataset.urls == [CORTEX_URL] and dataset.filenames == ["expression.bin"]


def test_default_filenames_and_populate_on_construction(mirror, tmp_path):
    dataset = _TextLines(urls=[CORTEX_URL], save_path=tmp_path)
    assert dataset.filenames == ["dataset_0"]
    assert dataset.X.shape == (62, 63)


def test_downloadable_dataset_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        DownloadableDataset()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"urls": 3}, TypeError, "`urls` must be a string or an iterable of strings"),
        ({"urls": ["a", 1]}, TypeError, "`urls` must contain strings"),
        ({"urls": ["a", "b"], "filenames": ["x"]}, ValueError, "`filenames` must name every downloaded file"),
        ({"save_path": 3}, TypeError, "`save_path` must be a path"),
    ],
)
def test_downloadable_dataset_validates_its_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _TextLines(**kwargs)


# ------------------------------------------------------------------------------------ safe pickles
class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_fixture_metadata_pickles_load(legacy_fixtures):
    pbmc = safe_load(legacy_fixtures / "pbmc_metadata.pickle")
    assert list(pbmc["list_clusters"][:2]) == ["B cells", "CD14+ Monocytes"]
    assert isinstance(pbmc["raw_qc"], pd.DataFrame) and pbmc["raw_qc"].shape == (91, 9)
    brain = safe_load(legacy_fixtures / "brain_small_metadata.pickle")
    assert brain["clusters"].shape == (50, 1)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_and_pandas_data_round_trip(protocol):
    frame = pd.DataFrame(
        {"a": [1, 2], "b": ["x", "y"], "c": pd.Categorical(["u", "v"]), "t": pd.to_datetime(["2020-01-01"] * 2)},
        index=pd.Index(["r1", "r2"], name="cell"),
    )
    obj = {"frame": frame, "array": np.arange(6.0).reshape(2, 3), "scalar": np.float32(2.5), "list": [1, (2, {3})]}
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    pd.testing.assert_frame_equal(back["frame"], frame)
    np.testing.assert_array_equal(back["array"], obj["array"])
    assert back["scalar"] == np.float32(2.5) and back["list"] == [1, (2, {3})]


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"clusters": _RunsCode(marker)})
    with pytest.raises(UnsafePickleError, match=r"refusing to load posix\.system|refusing to load os\.system"):
        safe_loads(payload)
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, name",
    [(pd.read_pickle, "read_pickle"), (np.load, "load"), (_RunsCode, "_RunsCode"), (shutil.rmtree, "rmtree")],
)
def test_pickles_naming_other_callables_are_refused(obj, name):
    with pytest.raises(UnsafePickleError, match=name):
        safe_loads(pickle.dumps(obj))


def test_memmap_is_refused_because_it_opens_files(tmp_path):
    array = np.memmap(tmp_path / "m.dat", dtype="f4", mode="w+", shape=(2,))
    with pytest.raises(UnsafePickleError, match="memmap"):
        safe_loads(pickle.dumps(array))
