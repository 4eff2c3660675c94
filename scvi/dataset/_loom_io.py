"""Read ``.loom`` files (HDF5: ``/matrix`` genes x cells, ``/row_attrs``, ``/col_attrs``, global attributes).

Read with h5py directly: loompy's attribute decoding mangles array-valued global attributes
(e.g. ``CellTypes``) under numpy 2, and nothing else of loompy is needed.
"""
import html
import logging
import os
from typing import Any, Dict, NamedTuple, Union

import numpy as np

logger = logging.getLogger(__name__)


class LoomContents(NamedTuple):
    """What a loom file holds.

    ``matrix`` is ``(n_genes, n_cells)`` as stored; row attributes have ``n_genes`` rows, column
    attributes ``n_cells`` rows; ``attrs`` are the file's global attributes.
    """

    matrix: np.ndarray
    row_attrs: Dict[str, np.ndarray]
    col_attrs: Dict[str, np.ndarray]
    attrs: Dict[str, Any]


def _decode(value: Any) -> Any:
    """Bytes (loom stores XML-escaped ASCII) to ``str``, element-wise for arrays."""
    if isinstance(value, (bytes, np.bytes_)):
        return html.unescape(value.decode("utf-8"))
    if isinstance(value, np.ndarray) and (value.dtype.kind == "S" or value.dtype == object):
        flat = [_decode(v) for v in value.ravel()]
        if all(isinstance(v, str) for v in flat):
            return np.asarray(flat, dtype=str).reshape(value.shape)
        return np.asarray(flat, dtype=object).reshape(value.shape)
    return value


def read_loom(path: Union[str, os.PathLike]) -> LoomContents:
    """Read a whole loom file into memory.

    Parameters
    ----------
    path
        The ``.loom`` file.

    Returns
    -------
    LoomContents
    """
    import h5py

    with h5py.File(path, "r") as handle:
        if "matrix" not in handle:
            raise ValueError(f"{path} is not a loom file: it has no /matrix dataset")
        matrix = handle["matrix"][()]
        row_attrs = {key: _decode(handle["row_attrs"][key][()]) for key in handle.get("row_attrs", {})}
        col_attrs = {key: _decode(handle["col_attrs"][key][()]) for key in handle.get("col_attrs", {})}
        attrs = {key: _decode(value) for key, value in handle.attrs.items()}
        if "attrs" in handle:  # loom >= 3.0 keeps global attributes in a group
            attrs.update({key: _decode(handle["attrs"][key][()]) for key in handle["attrs"]})
    return LoomContents(matrix, row_attrs, col_attrs, attrs)
