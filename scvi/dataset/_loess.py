"""One-dimensional LOESS (local quadratic regression), as used by Seurat v3 gene selection.

Reproduces the default fit of the netlib ``loess`` library (R's ``loess``, ``skmisc.loess``) for
one predictor: gaussian family, tricube weights over the ``floor(n * span)`` nearest neighbours,
and the default ``surface="interpolate"``: the local fit (value and slope) is computed only at the
vertices of a k-d tree over ``x`` and blended by cubic Hermite interpolation in between.
"""
from typing import Tuple

import numpy as np

# netlib loess defaults: a k-d tree cell holds at most floor(n * span * _CELL) points and the
# bounding box is widened by _MARGIN of the data range on each side.
_CELL = 0.2
_MARGIN = 0.005


def loess_fit(x: np.ndarray, y: np.ndarray, span: float = 0.3, degree: int = 2) -> np.ndarray:
    """Fitted values of a one-predictor LOESS regression of ``y`` on ``x``.

    Parameters
    ----------
    x, y
        Predictor and response, shape ``(n,)``.
    span
        Fraction of the points in each local neighbourhood, in ``(0, 1]``.
    degree
        Degree of the local polynomial (1 or 2).

    Returns
    -------
    np.ndarray
        Fitted values at ``x``, shape ``(n,)``, float64.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` must have the same length; got {x.size} and {y.size}")
    if not 0 < span <= 1:
        raise ValueError(f"`span` must be in (0, 1]; got {span}")
    if degree not in (1, 2):
        raise ValueError(f"`degree` must be 1 or 2; got {degree}")
    n = x.size
    n_neighbors = int(np.floor(n * span))
    if n_neighbors <= degree:
        raise ValueError(
            f"span too small: {n_neighbors} neighbours for a degree-{degree} fit of {n} points"
        )
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    vertices = _kd_vertices(xs, max_points=int(np.floor(n * span * _CELL)))
    values, slopes = _local_fit(xs, ys, vertices, n_neighbors, degree)
    fitted = np.empty(n)
    fitted[order] = _hermite(xs, vertices, values, slopes)
    return fitted


def _kd_vertices(xs: np.ndarray, max_points: int) -> np.ndarray:
    """Vertices of the 1-D k-d tree: cells are halved at the median until small enough.

    ``xs`` is sorted. Returns the sorted cell boundaries, including the widened bounding box.
    """
    lo, hi = xs[0], xs[-1]
    margin = _MARGIN * max(hi - lo, 1e-10 * max(abs(lo), abs(hi)) + 1e-30)
    vertices = [lo - margin, hi + margin]
    stack = [(0, xs.size - 1, lo - margin, hi + margin)]
    while stack:
        first, last, left, right = stack.pop()
        if last - first + 1 <= max_points:
            continue
        mid = (first + last) // 2
        # all ties go with the same cell: move the split to the nearest change of value
        mid = _untie(xs, mid, first, last)
        if mid is None:
            continue
        split = xs[mid]
        if split == left or split == right:
            continue
        vertices.append(split)
        stack.append((first, mid, left, split))
        stack.append((mid + 1, last, split, right))
    return np.unique(np.asarray(vertices))


def _untie(xs: np.ndarray, mid: int, first: int, last: int):
    """Closest index ``m`` to ``mid`` (searching outwards, right first) with ``xs[m] != xs[m + 1]``."""
    offset = 0
    while first <= mid + offset < last:
        if xs[mid + offset] != xs[mid + offset + 1]:
            return mid + offset
        offset = -offset if offset > 0 else -offset + 1
    return None


def _local_fit(
    xs: np.ndarray, ys: np.ndarray, points: np.ndarray, n_neighbors: int, degree: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Value and slope at each of ``points`` of the tricube-weighted local polynomial fit."""
    values = np.empty(points.size)
    slopes = np.empty(points.size)
    for i, point in enumerate(points):
        dist = np.abs(xs - point)
        radius = np.partition(dist, n_neighbors - 1)[n_neighbors - 1]
        near = dist < radius
        weights = (1 - (dist[near] / radius) ** 3) ** 3
        centred = xs[near] - point
        design = np.vander(centred, degree + 1, increasing=True) * np.sqrt(weights)[:, None]
        coef = np.linalg.lstsq(design, ys[near] * np.sqrt(weights), rcond=None)[0]
        values[i], slopes[i] = coef[0], coef[1]
    return values, slopes


def _hermite(xs: np.ndarray, vertices: np.ndarray, values: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation of the vertex values and slopes at ``xs``."""
    cell = np.clip(np.searchsorted(vertices, xs, side="right") - 1, 0, vertices.size - 2)
    left, right = vertices[cell], vertices[cell + 1]
    width = right - left
    h = (xs - left) / width
    phi0 = (1 - h) ** 2 * (1 + 2 * h)
    phi1 = h**2 * (3 - 2 * h)
    psi0 = h * (1 - h) ** 2
    psi1 = -(h**2) * (1 - h)
    return (
        phi0 * values[cell]
        + phi1 * values[cell + 1]
        + (psi0 * slopes[cell] + psi1 * slopes[cell + 1]) * width
    )
