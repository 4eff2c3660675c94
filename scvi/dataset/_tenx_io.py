"""Read Cell Ranger outputs: matrix folders (v2 ``genes.tsv`` and v3 ``features.tsv.gz`` layouts) and ``.h5`` files.

Every reader returns a :class:`TenXMatrix`: a ``(n_cells, n_features)`` CSR matrix, the feature
table (column 0: ids, 1: names, 2: feature type when present) and the cell barcodes.
"""
import logging
import os
import tarfile
from pathlib import Path
from typing import NamedTuple, Optional, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

_MATRIX_FILES = ("matrix.mtx", "matrix.mtx.gz")


class TenXMatrix(NamedTuple):
    """Counts of a Cell Ranger output."""

    X: sp.csr_matrix  # (n_cells, n_features)
    features: pd.DataFrame  # n_features rows; columns 0 (ids), 1 (names), 2 (type) when present
    barcodes: Optional[np.ndarray]  # (n_cells,) str


def find_matrix_folder(root: PathLike) -> Tuple[str, str]:
    """Find the folder holding ``matrix.mtx`` or ``matrix.mtx.gz`` under ``root``.

    Returns
    -------
    The folder, and ``".gz"`` when the files are compressed (v3 layout) else ``""``.

    Raises
    ------
    FileNotFoundError
        If there is no such folder.
    """
    for folder, _, files in sorted(os.walk(root)):
        visible = {name for name in files if not name.startswith(".")}
        for suffix in ("", ".gz"):
            if "matrix.mtx" + suffix in visible:
                return folder, suffix
    raise FileNotFoundError(f"No matrix.mtx(.gz) found in path ({root}).")


def _first_existing(folder: Path, names) -> Optional[Path]:
    for name in names:
        if (folder / name).exists():
            return folder / name
    return None


def read_10x_mtx(folder: PathLike) -> TenXMatrix:
    """Read a Cell Ranger matrix folder (``matrix.mtx``, ``genes.tsv`` / ``features.tsv.gz``, ``barcodes``)."""
    from scipy.io import mmread

    folder = Path(folder)
    matrix_path = _first_existing(folder, _MATRIX_FILES)
    features_path = _first_existing(folder, ("features.tsv.gz", "features.tsv", "genes.tsv", "genes.tsv.gz"))
    if matrix_path is None or features_path is None:
        raise FileNotFoundError(f"{folder} lacks matrix.mtx(.gz) or genes.tsv / features.tsv(.gz)")
    X = sp.csr_matrix(mmread(str(matrix_path)).T)  # stored features x cells
    features = pd.read_csv(features_path, sep="\t", header=None)
    barcodes_path = _first_existing(folder, ("barcodes.tsv.gz", "barcodes.tsv"))
    barcodes = None
    if barcodes_path is not None:
        barcodes = np.asarray(pd.read_csv(barcodes_path, sep="\t", header=None).iloc[:, 0], dtype=str)
    _check_shapes(X, features, barcodes, folder)
    return TenXMatrix(X, features, barcodes)


def _strings(values: np.ndarray) -> np.ndarray:
    return np.asarray([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def read_10x_h5(path: PathLike, genome: Optional[str] = None) -> TenXMatrix:
    """Read a Cell Ranger ``.h5`` matrix (v2: one group per genome; v3: a ``matrix`` group with ``features``).

    Parameters
    ----------
    path
        The ``.h5`` file.
    genome
        For v2 files with several genomes, the group to read (default: the first).
    """
    import h5py

    with h5py.File(path, "r") as handle:
        if "matrix" in handle and "features" in handle["matrix"]:  # Cell Ranger >= 3
            group = handle["matrix"]
            feats = group["features"]
            columns = [_strings(feats["id"][()]), _strings(feats["name"][()])]
            if "feature_type" in feats:
                columns.append(_strings(feats["feature_type"][()]))
        else:  # Cell Ranger 1-2: /<genome>/{data, indices, indptr, shape, genes, gene_names, barcodes}
            genomes = [name for name in handle if isinstance(handle[name], h5py.Group)]
            if not genomes:
                raise ValueError(f"{path} is not a 10x h5 matrix file")
            if genome is not None and genome not in genomes:
                raise ValueError(f"`genome` must be one of {genomes}; got {genome!r}")
            group = handle[genome or genomes[0]]
            columns = [_strings(group["genes"][()]), _strings(group["gene_names"][()])]
        n_features, n_cells = (int(n) for n in group["shape"][()])
        # Stored as CSC features x cells, i.e. CSR cells x features.
        X = sp.csr_matrix(
            (group["data"][()].astype(np.float32), group["indices"][()], group["indptr"][()]),
            shape=(n_cells, n_features),
        )
        barcodes = _strings(group["barcodes"][()]) if "barcodes" in group else None
    features = pd.DataFrame(dict(enumerate(columns)))
    _check_shapes(X, features, barcodes, path)
    return TenXMatrix(X, features, barcodes)


def _check_shapes(X: sp.csr_matrix, features: pd.DataFrame, barcodes: Optional[np.ndarray], where) -> None:
    if X.shape[1] != len(features):
        raise ValueError(f"{where}: the matrix has {X.shape[1]} features but the feature table {len(features)} rows")
    if barcodes is not None and len(barcodes) != X.shape[0]:
        raise ValueError(f"{where}: the matrix has {X.shape[0]} cells but there are {len(barcodes)} barcodes")


def batch_indices_from_barcodes(barcodes: np.ndarray) -> Optional[np.ndarray]:
    """10x barcodes ``"ACGT...-<n>"`` carry the 1-based index of their library: return ``n - 1``.

    ``None`` when the barcodes have no integer suffix.
    """
    suffixes = [barcode.rsplit("-", 1)[-1] if "-" in barcode else "" for barcode in barcodes]
    if not all(suffix.isdigit() for suffix in suffixes):
        logger.warning("Barcodes without a '-<integer>' suffix: all cells are put in batch 0")
        return None
    return np.asarray(suffixes, dtype=np.int64) - 1


def extract_tar(archive: PathLike, destination: PathLike) -> None:
    """Extract a ``.tar.gz`` archive, refusing members that would land outside ``destination``."""
    destination = Path(destination).resolve()
    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(path=destination, filter="data")
            return
        for member in tar.getmembers():  # pragma: no cover - Python without extraction filters
            target = (destination / member.name).resolve()
            if destination not in target.parents and target != destination:
                raise ValueError(f"{archive}: member {member.name!r} would be extracted outside {destination}")
            if not (member.isfile() or member.isdir()):
                raise ValueError(f"{archive}: member {member.name!r} is not a regular file or folder")
        tar.extractall(path=destination)
