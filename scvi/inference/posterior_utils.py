"""Helpers of the legacy ``scvi.inference.posterior_utils`` module: loading a saved posterior,
latent-space scores (batch entropy, kNN purity, neighbour overlap, clustering accuracy) and the
imputation plot. Differential-expression helpers are re-exported at the end of the module."""
import json
import logging
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch

from scvi._utils import atomic_path, check_random_state, resolve_device
from scvi.dataset import AnnDatasetFromAnnData

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- loading
def _posterior_classes() -> dict:
    """Posterior classes that ``load_posterior`` can rebuild, by name (those importable)."""
    import importlib

    classes = {}
    for module, name in (
        ("scvi.inference.posterior", "Posterior"),
        ("scvi.inference.annotation", "AnnotationPosterior"),
        ("scvi.inference.total_inference", "TotalPosterior"),
        ("scvi.inference.jvae_trainer", "JPosterior"),
    ):
        try:
            classes[name] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):  # a posterior type not available in this install
            continue
    return classes


def _read_loader_kwargs(dir_path: Path) -> dict:
    """Data-loader options saved with a posterior (JSON; legacy ``.h5`` needs pytables)."""
    json_path = dir_path / "data_loader_kwargs.json"
    if json_path.exists():
        return json.loads(json_path.read_text())
    h5_path = dir_path / "data_loader_kwargs.h5"
    if h5_path.exists():
        import pandas as pd

        return pd.read_hdf(h5_path, key="data_loader").to_dict()
    return {}


def load_posterior(
    dir_path: str,
    model: torch.nn.Module,
    use_cuda: Optional[Union[bool, str]] = "auto",
    **posterior_kwargs,
):
    """Rebuild a posterior saved with ``Posterior.save_posterior``.

    Parameters
    ----------
    dir_path
        The folder written by ``save_posterior``.
    model
        A model built with the same parameters as the saved one; its weights are loaded.
    use_cuda
        ``"auto"``: the GPU when available; ``True``/``False`` as in the trainers.
    **posterior_kwargs
        Extra arguments of the posterior class.

    Returns
    -------
    Posterior
        Of the saved type, over the saved cells.

    Raises
    ------
    ValueError
        If the saved posterior type is unknown.
    FileNotFoundError
        If ``dir_path`` is not a saved posterior.

    Examples
    --------
    >>> trainer.train_set.save_posterior("./my_run_train_posterior")
    >>> post = load_posterior("./my_run_train_posterior", model=VAE(n_genes, n_batch))
    """
    path = Path(dir_path)
    type_file = path / "posterior_type.txt"
    if not type_file.exists():
        raise FileNotFoundError(f"{dir_path} does not hold a saved posterior (no posterior_type.txt)")
    class_name = type_file.read_text().strip()
    classes = _posterior_classes()
    if class_name not in classes:
        raise ValueError(f"Posterior type {class_name!r} not eligible for loading; known: {sorted(classes)}")

    import anndata

    adata = anndata.read_h5ad(path / "anndata_dataset.h5ad")
    mappings = dict(adata.uns.get("cell_measurements_col_mappings", {}))
    dataset = AnnDatasetFromAnnData(ad=adata, cell_measurements_col_mappings=mappings)

    device = resolve_device(use_cuda)
    state = torch.load(path / "model_params.pt", map_location=device, weights_only=True)
    model.load_state_dict(state)
    model.to(device)
    model.eval()
    return classes[class_name](
        model=model,
        gene_dataset=dataset,
        shuffle=False,
        indices=np.load(path / "indices.npy"),
        use_cuda=device.type == "cuda",
        data_loader_kwargs=_read_loader_kwargs(path),
        **posterior_kwargs,
    )


# ---------------------------------------------------------------------------------------- neighbours
def _neighbours(latent: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Indices of the ``n_neighbors`` nearest other cells of each cell, shape ``(n, n_neighbors)``."""
    from sklearn.neighbors import NearestNeighbors

    n = len(latent)
    if n < 2:
        raise ValueError("at least 2 cells are needed for neighbourhood scores")
    n_neighbors = min(n_neighbors, n - 1)
    idx = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(latent).kneighbors(latent, return_distance=False)
    is_self = idx == np.arange(n)[:, None]
    # Cells whose self is not among the results (duplicates) drop their farthest neighbour instead.
    is_self[~is_self.any(axis=1), -1] = True
    return idx[~is_self].reshape(n, n_neighbors)


def entropy_from_indices(indices) -> float:
    """Shannon entropy (nats) of the empirical distribution of ``indices``."""
    from scipy.stats import entropy

    return entropy(np.unique(indices, return_counts=True)[1].astype(np.int32))


def entropy_batch_mixing(
    latent_space, batches, n_neighbors=50, n_pools=50, n_samples_per_pool=100, *, random_state=None
) -> float:
    """Mean entropy of the batch proportions among each cell's nearest neighbours (two batches).

    Parameters
    ----------
    latent_space
        Shape ``(n_cells, n_latent)``.
    batches
        Batch (0 or 1) of each cell, shape ``(n_cells,)``.
    n_neighbors
        Neighbours per cell.
    n_pools, n_samples_per_pool
        The score is averaged over ``n_pools`` random pools of cells (drawn with replacement).
    random_state
        Seed or generator of the pools.

    Returns
    -------
    float
        Between 0 (no mixing) and ``log 2`` (perfect mixing).
    """
    batches = np.asarray(batches).ravel()
    if len(np.unique(batches)) > 2:
        raise ValueError("entropy_batch_mixing needs at most two batches")
    neighbours = _neighbours(np.asarray(latent_space), n_neighbors)
    frequency = (batches[neighbours] == 1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cell_entropy = -frequency * np.log(frequency) - (1 - frequency) * np.log(1 - frequency)
    cell_entropy = np.nan_to_num(cell_entropy, nan=0.0)
    pools = check_random_state(random_state).integers(0, len(batches), size=(n_pools, n_samples_per_pool))
    return float(cell_entropy[pools].mean())


def knn_purity(latent, label, n_neighbors=30) -> float:
    """Mean over labels of the fraction of each cell's neighbours sharing its label.

    Parameters
    ----------
    latent
        Shape ``(n_cells, n_latent)``.
    label
        Shape ``(n_cells,)``.
    n_neighbors
        Neighbours per cell.
    """
    label = np.asarray(label).ravel()
    neighbours = _neighbours(np.asarray(latent), n_neighbors)
    scores = (label[neighbours] == label[:, None]).mean(axis=1)
    return float(np.mean([scores[label == value].mean() for value in np.unique(label)]))


def nn_overlap(X1, X2, k=100) -> Tuple[float, float]:
    """Agreement of the k-nearest-neighbour graphs of ``X1`` and ``X2`` (same cells).

    Returns
    -------
    spearman_correlation
        Spearman correlation of the two adjacency matrices.
    fold_enrichment
        Shared edges relative to chance.
    """
    from scipy.stats import spearmanr

    if len(X1) != len(X2):
        raise ValueError(f"X1 and X2 must have the same number of cells; got {len(X1)} and {len(X2)}")
    n = len(X1)
    adjacency = []
    for data in (X1, X2):
        matrix = np.zeros((n, n))
        neighbours = _neighbours(np.asarray(data), k)
        matrix[np.repeat(np.arange(n), neighbours.shape[1]), neighbours.ravel()] = 1
        adjacency.append(matrix.ravel())
    spearman_correlation = spearmanr(adjacency[0], adjacency[1])[0]
    shared = np.sum((adjacency[0] == 1) & (adjacency[1] == 1))
    fold_enrichment = shared * n**2 / (float(adjacency[0].sum()) * adjacency[1].sum())
    return spearman_correlation, fold_enrichment


def unsupervised_clustering_accuracy(
    y: Union[np.ndarray, torch.Tensor], y_pred: Union[np.ndarray, torch.Tensor]
) -> tuple:
    """Accuracy of the best one-to-one matching of predicted clusters to labels (Hungarian).

    Parameters
    ----------
    y, y_pred
        Labels and predicted clusters, shape ``(n_cells,)``.

    Returns
    -------
    accuracy
        Fraction of cells whose matched cluster is their label.
    assignments
        Matched (cluster, label) positions, shape ``(n_clusters, 2)``.
    """
    from scipy.optimize import linear_sum_assignment

    y, y_pred = np.asarray(y).ravel(), np.asarray(y_pred).ravel()
    if len(y) != len(y_pred):
        raise ValueError(f"y and y_pred must have the same length; got {len(y)} and {len(y_pred)}")
    values = np.unique(np.concatenate((y, y_pred)))
    y_code, pred_code = np.searchsorted(values, y), np.searchsorted(values, y_pred)
    reward = np.zeros((len(values), len(values)), dtype=np.int64)
    np.add.at(reward, (pred_code, y_code), 1)
    rows, cols = linear_sum_assignment(reward.max() - reward)
    assignments = np.stack([rows, cols], axis=1)
    return reward[rows, cols].sum() * 1.0 / y_pred.size, assignments


def proximity_imputation(real_latent1, normed_gene_exp_1, real_latent2, k=4) -> np.ndarray:
    """Expression of the cells ``real_latent2`` as the distance-weighted mean of their ``k``
    nearest cells in ``real_latent1``."""
    from sklearn.neighbors import KNeighborsRegressor

    return KNeighborsRegressor(k, weights="distance").fit(real_latent1, normed_gene_exp_1).predict(real_latent2)


def plot_imputation(original, imputed, show_plot=True, title="Imputation"):
    """Density of imputed against original counts (below 10), saved to ``title + ".png"``.

    Parameters
    ----------
    original, imputed
        Values at the corrupted entries, shape ``(n,)``.
    show_plot
        Also show the figure (interactive backends).
    title
        Title of the figure and path of the image (without extension).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    ymax, nbins = 10, 50
    x, y = np.asarray(original, dtype=float), np.asarray(imputed, dtype=float)
    keep = (x < ymax) & (y < ymax)
    x, y = x[keep], y[keep]
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.set_xlim([0, ymax])
    axis.set_ylim([0, ymax])
    axis.set_title(Path(str(title)).name, fontsize=12)
    axis.set_ylabel("Imputed counts")
    axis.set_xlabel("Original counts")
    linspace = np.linspace(0, ymax)
    if len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
        xi, yi = np.mgrid[0 : ymax : nbins * 1j, 0 : ymax : nbins * 1j]
        zi = gaussian_kde(np.vstack([x, y]))(np.vstack([xi.ravel(), yi.ravel()]))
        axis.pcolormesh(yi, xi, zi.reshape(xi.shape), cmap="Reds")
    if len(x) and np.any(y):
        slope = np.linalg.lstsq(y[:, None], x, rcond=None)[0]
        axis.plot(linspace, slope * linspace, color="black")
    axis.plot(linspace, linspace, color="black", linestyle=":")
    with atomic_path(f"{title}.png") as tmp:
        figure.savefig(tmp, format="png")
    if show_plot and "agg" not in plt.get_backend().lower():
        plt.show()
    return figure


# Differential-expression helpers (scvi.inference._posterior) are re-exported below.
from scvi.inference._differential import credible_intervals, describe_continuous_distrib, pairs_sampler, save_cluster_xlsx  # noqa: E402,F401,E501
