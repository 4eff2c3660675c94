"""Writing differential-expression tables (xlsx through openpyxl, csv otherwise), atomically."""
import os
import re
import warnings
from typing import Iterable, List

import pandas as pd

from scvi._utils import atomic_path


def save_cluster_xlsx(filepath: str, de_results: List[pd.DataFrame], cluster_names: List):
    """Save per-cluster differential-expression tables, one sheet per cluster.

    The file is written atomically. Without ``openpyxl`` the tables are concatenated (with a
    ``clusters`` column) into a csv file next to ``filepath`` (suffix ``.csv``).

    Parameters
    ----------
    filepath
        Destination ``.xlsx`` path.
    de_results
        One DataFrame per cluster.
    cluster_names
        Names of the clusters, same length as ``de_results``.

    Returns
    -------
    str
        The path actually written.
    """
    if len(de_results) != len(cluster_names):
        raise ValueError(
            "`de_results` and `cluster_names` must have the same length; "
            f"got {len(de_results)} and {len(cluster_names)}"
        )
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        csv_path = os.path.splitext(str(filepath))[0] + ".csv"
        warnings.warn(f"openpyxl is not installed: writing {csv_path} instead of an xlsx file", stacklevel=2)
        frames = [
            frame if "clusters" in frame.columns else frame.assign(clusters=name)
            for frame, name in zip(de_results, cluster_names)
        ]
        table = pd.concat(frames) if frames else pd.DataFrame()
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp)
        return csv_path
    with atomic_path(filepath) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for frame, name in zip(de_results, _sheet_names(cluster_names)):
                frame.to_excel(writer, sheet_name=name)
    return str(filepath)


def _sheet_names(cluster_names: Iterable) -> List[str]:
    """Valid, unique Excel sheet names (at most 31 characters, none of ``[]:*?/\\``)."""
    names: List[str] = []
    for name in cluster_names:
        base = re.sub(r"[\[\]:*?/\\]", "_", str(name))[:31] or "sheet"
        candidate, i = base, 1
        while candidate in names:
            suffix = f"_{i}"
            candidate, i = base[: 31 - len(suffix)] + suffix, i + 1
        names.append(candidate)
    return names


