"""Helpers shared by the tutorial notebooks and the main job: test mode, data location, offline mirror.

The notebooks reproduce chapter 2 of the scVI 0.6.3 documentation. With internet they download the
original datasets unchanged. Without it they use the project's shared data folder
(``$SCVI_SHARED_DATA`` or ``../shared/data`` next to the repository):

* the real count matrices of ``shared/data/real`` (PBMC 3k, Kang control/stimulated, kidney immune
  cells), loaded with :func:`real_dataset` through ``AnnDatasetFromAnnData``;
* the legacy loaders' fixture files of ``shared/data/legacy-fixtures``, served to the unchanged
  loaders (``CortexDataset``, ``Dataset10X``, ``SmfishDataset`` …) by a download *mirror*: a
  temporary folder laid out as ``<host>/<path>`` whose files are symbolic links to the fixtures
  (:func:`use_offline_mirror`).
"""
import logging
import os
import socket
import tempfile
import urllib.parse
from pathlib import Path
from typing import Dict, Optional, Union

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Environment variable that switches every notebook to its quick (test-suite) mode.
TEST_MODE_ENV_VAR = "SCVI_NOTEBOOK_TEST_MODE"

#: Real count matrices of ``shared/data/real`` by short name.
REAL_FILES = {
    "pbmc3k": "pbmc3k_raw.h5ad",
    "kang_ctrl": "kang_pbmc_ctrl_raw.h5ad",
    "kang_stim": "kang_pbmc_stim_raw.h5ad",
    "kidney_immune": "kidney_immune_raw.h5ad",
}

_GH = "https://github.com/YosefLab/scVI-data/raw/master/"
_GEO = "ftp://ftp.ncbi.nlm.nih.gov/geo/series/GSE100nnn/GSE100866/suppl/GSE100866_{}-{}.csv.gz"

#: Original URL used by the tutorials -> fixture file (relative to ``legacy-fixtures``).
LEGACY_URLS: Dict[str, str] = {
    "https://storage.googleapis.com/linnarsson-lab-www-blobs/blobs/cortex/expression_mRNA_17-Aug-2014.txt": (
        "expression.bin"
    ),
    "http://cf.10xgenomics.com/samples/cell-exp/1.3.0/1M_neurons/1M_neurons_filtered_gene_bc_matrices_h5.h5": (
        "brain_large.h5"
    ),
    _GH + "retina.loom": "retina.loom",
    _GH + "fc-dropseq.loom": "fc-dropseq.loom",
    _GH + "mpfc-starmap.loom": "mpfc-starmap.loom",
    _GH + "brain_small_metadata.pickle": "brain_small_metadata.pickle",
    _GH + "gene_info.csv": "gene_info_pbmc.csv",
    _GH + "pbmc_metadata.pickle": "pbmc_metadata.pickle",
    _GH + "random_metadata.pickle": "random_metadata.pickle",
    _GH + "simulation/simulation_1.loom": "simulation/simulation_1.loom",
    "http://linnarssonlab.org/osmFISH/osmFISH_SScortex_mouse_all_cells.loom": "osmFISH_SScortex_mouse_all_cell.loom",
    # data loading tutorial (§2.2): the generic loaders' remote examples
    "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSE100866&format=file&"
    "file=GSE100866%5FCBMK%5F8K%5F13AB%5F10X%2DRNA%5Fumi%2Ecsv%2Egz": "GSE100866_CBMC_8K_13AB_10X-RNA_umi.csv.gz",
    "https://github.com/YosefLab/scVI/blob/master/tests/data/TM_droplet_mat.h5ad?raw=true": "TM_droplet_mat.h5ad",
    "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSM2388072&format=file&"
    "file=GSM2388072%5Fbasal%5Fbone%5Fmarrow%2Eraw%5Fumifm%5Fcounts%2Ecsv%2Egz": "HEMATO/bBM.raw_umifm_counts.csv.gz",
    "https://github.com/romain-lopez/scVI-reproducibility/raw/master/additional/data.zip": "HEMATO/data.zip",
}
for _name, _series in (("cbmc", "CBMC_8K_13AB_10X"), ("pbmc", "PBMC_vs_flow_10X")):
    LEGACY_URLS[_GEO.format(_series, "RNA_umi")] = f"citeSeq/{_name}/{_name}_rna.csv.gz"
    LEGACY_URLS[_GEO.format(_series, "ADT_umi")] = f"citeSeq/{_name}/{_name}_adt.csv.gz"
    LEGACY_URLS[_GEO.format(_series, "ADT_clr-transformed")] = f"citeSeq/{_name}/{_name}_adt_centered.csv.gz"


def notebook_test_mode(default: bool = False) -> bool:
    """``True`` when ``$SCVI_NOTEBOOK_TEST_MODE`` asks for the quick run (``1``/``true``/``yes``)."""
    value = os.environ.get(TEST_MODE_ENV_VAR)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def shared_data_dir() -> Path:
    """The shared data folder: ``$SCVI_SHARED_DATA``, else ``../shared/data`` next to the repository."""
    env = os.environ.get("SCVI_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def internet_available(host: str = "github.com", port: int = 443, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    ``$SCVI_OFFLINE=1`` forces ``False`` (used by the test suite, which must never download).
    """
    if os.environ.get("SCVI_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _mirror_relative(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.netloc + parts.path + ("?" + parts.query if parts.query else "")


def build_legacy_mirror(folder: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Lay out the legacy fixture files as a download mirror (``<folder>/<host>/<path>`` symlinks).

    Parameters
    ----------
    folder
        Where to build the mirror; a new temporary folder by default.

    Returns
    -------
    The mirror folder, to hand to ``scvi.dataset.set_data_mirror``.

    Raises
    ------
    FileNotFoundError
        If the legacy fixtures folder is absent.
    """
    from scvi.dataset.dataset10X import tenx_source

    fixtures = shared_data_dir() / "legacy-fixtures"
    if not fixtures.is_dir():
        raise FileNotFoundError(
            f"legacy fixtures not found at {fixtures}: set SCVI_SHARED_DATA to the shared/data folder"
        )
    mirror = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="scvi-mirror-"))
    table = dict(LEGACY_URLS)
    for sub in sorted((fixtures / "10X").iterdir()):
        url, filename = tenx_source(sub.name)
        table[url] = f"10X/{sub.name}/{filename}"
    for url, relative in table.items():
        source = fixtures / relative
        if not source.exists():
            continue
        link = mirror / _mirror_relative(url)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(source)
    return mirror


def use_offline_mirror(force: bool = False) -> Optional[Path]:
    """Serve the legacy fixtures to the built-in loaders when there is no internet (or ``force``).

    Returns the mirror folder in use, or ``None`` when the original hosts are reachable.
    """
    from scvi.dataset import set_data_mirror

    if not force and internet_available():
        return None
    mirror = build_legacy_mirror()
    set_data_mirror(mirror)
    logger.info("No internet: the built-in loaders read the legacy fixture files through the mirror %s", mirror)
    return mirror


def read_real(name: str):
    """Read one of the real count matrices of ``shared/data/real`` as an ``AnnData``.

    Parameters
    ----------
    name
        One of ``REAL_FILES`` (``"pbmc3k"``, ``"kang_ctrl"``, ``"kang_stim"``, ``"kidney_immune"``).

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    FileNotFoundError
        If the file is absent.
    """
    import anndata

    if name not in REAL_FILES:
        raise ValueError(f"`name` must be one of {sorted(REAL_FILES)}; got {name!r}")
    path = shared_data_dir() / "real" / REAL_FILES[name]
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: set SCVI_SHARED_DATA to the shared/data folder")
    return anndata.read_h5ad(path)


def subsample_cells(adata, n_cells: Optional[int], random_state: int = 0):
    """A random subset of ``n_cells`` cells of ``adata`` (all of them when ``n_cells`` is None or larger)."""
    import numpy as np

    if n_cells is None or n_cells >= adata.n_obs:
        return adata
    rng = np.random.default_rng(random_state)
    keep = np.sort(rng.choice(adata.n_obs, size=n_cells, replace=False))
    return adata[keep].copy()


def real_dataset(name: str, n_cells: Optional[int] = None, random_state: int = 0, **kwargs):
    """A real count matrix as a ``GeneExpressionDataset`` (through ``AnnDatasetFromAnnData``).

    Parameters
    ----------
    name
        See :func:`read_real`.
    n_cells
        Keep a random subset of this many cells (all cells when ``None``).
    random_state
        Seed of the cell subset.
    **kwargs
        Passed on to ``AnnDatasetFromAnnData`` (e.g. ``batch_label``, ``ctype_label``).
    """
    from scvi.dataset import AnnDatasetFromAnnData

    adata = subsample_cells(read_real(name), n_cells, random_state)
    return AnnDatasetFromAnnData(adata, **kwargs)


def kmeans_clusters(latent, n_clusters: int = 8, random_state: int = 0):
    """K-means clusters of a latent space, as integers (stand-in for Leiden/Louvain when
    ``leidenalg``/``louvain`` are not installed)."""
    from sklearn.cluster import KMeans

    n_clusters = max(1, min(n_clusters, len(latent)))
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state).fit_predict(latent)


def leiden(adata, key_added: str, resolution: float = 1.0, use_rep: Optional[str] = None, n_clusters: int = 8):
    """``scanpy.tl.leiden``; k-means on ``adata.obsm[use_rep]`` when ``leidenalg`` is not installed.

    The k-means fallback is announced (printed) and stored as categorical strings, like Leiden's.
    """
    import scanpy as sc

    try:
        sc.tl.leiden(adata, key_added=key_added, resolution=resolution)
    except ImportError as error:
        latent = adata.obsm[use_rep] if use_rep else adata.X
        print(f"Leiden unavailable ({error}); clustering with k-means ({n_clusters} clusters) on {use_rep or 'X'}")
        labels = kmeans_clusters(latent, n_clusters)
        import pandas as pd

        adata.obs[key_added] = pd.Categorical([str(label) for label in labels])


#: Marker genes naming the main PBMC populations (lower-case, as the introduction tutorial uses).
PBMC_MARKERS = {
    "CD4 T": "il7r",
    "CD8 T": "cd8a",
    "B": "ms4a1",
    "NK": "gnly",
    "CD14 monocytes": "lyz",
    "FCGR3A monocytes": "fcgr3a",
    "dendritic": "fcer1a",
    "megakaryocytes": "ppbp",
}


def name_clusters_by_markers(X, gene_names, clusters, markers=None):
    """Name each cluster after the marker gene it expresses most (relative to the other clusters).

    Parameters
    ----------
    X
        Counts, shape ``(n_cells, n_genes)`` (dense or sparse).
    gene_names
        Shape ``(n_genes,)``.
    clusters
        Integer cluster of each cell, shape ``(n_cells,)``, values ``0..k-1``.
    markers
        ``{population: gene}``; default :data:`PBMC_MARKERS`.

    Returns
    -------
    numpy.ndarray of ``k`` names such as ``"2: B (ms4a1)"``; ``"k: ?"`` when no marker is measured.
    """
    import numpy as np

    markers = PBMC_MARKERS if markers is None else markers
    gene_names = np.asarray(gene_names).astype(str)
    lower = np.char.lower(gene_names)
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    library = X.sum(axis=1, keepdims=True)
    normalised = X / np.maximum(library, 1) * 1e4
    clusters = np.asarray(clusters).ravel()
    k = int(clusters.max()) + 1
    present = [(pop, gene) for pop, gene in markers.items() if gene in lower]
    names = []
    for c in range(k):
        if not present:
            names.append(f"{c}: ?")
            continue
        scores = []
        for _, gene in present:
            column = normalised[:, lower == gene][:, 0]
            inside, outside = column[clusters == c].mean(), column[clusters != c].mean()
            scores.append(np.log1p(inside) - np.log1p(outside))
        pop, gene = present[int(np.argmax(scores))]
        names.append(f"{c}: {pop} ({gene})")
    return np.array(names)


def stage_fixture_files(relative_paths, destination: Union[str, os.PathLike]) -> None:
    """Copy legacy fixture files (paths relative to ``legacy-fixtures``) into ``destination``.

    Used where a fixture archive is a stub (HEMATO's ``data.zip`` lacks the annotation files that the
    loader then reads from its ``save_path``).
    """
    import shutil

    fixtures = shared_data_dir() / "legacy-fixtures"
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for relative in relative_paths:
        shutil.copyfile(fixtures / relative, destination / Path(relative).name)
