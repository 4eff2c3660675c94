"""Helper functions of the gimVI tutorial (``import notebooks.utils.gimvi_tutorial as gimvi_utils``).

They take a trained :class:`~scvi.inference.JVAETrainer` whose datasets are
``[sequencing, spatial]``: ``plot_umap`` embeds both latent spaces, ``imputation_score`` scores
the imputation of genes hidden from the spatial data, ``plot_gene_spatial`` draws a gene in space.
"""
import logging
from typing import Optional, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["plot_umap", "imputation_score", "plot_gene_spatial"]


def _embed_2d(latent: np.ndarray, random_state: Optional[int]) -> np.ndarray:
    """UMAP embedding of ``latent`` (t-SNE when umap-learn is not installed)."""
    try:
        from umap import UMAP
    except ImportError:
        from sklearn.manifold import TSNE

        logger.info("umap-learn is not installed: using t-SNE")
        return TSNE(n_components=2, init="pca", random_state=random_state).fit_transform(latent)
    # a seed makes UMAP reproducible but single-threaded
    reducer = UMAP() if random_state is None else UMAP(random_state=random_state, n_jobs=1)
    return reducer.fit_transform(latent)


def plot_umap(trainer, random_state: Optional[int] = None) -> None:
    """Plot the joint latent space of both datasets, coloured by dataset and by cell type.

    Parameters
    ----------
    trainer
        A trained :class:`~scvi.inference.JVAETrainer` over ``[data_seq, data_spatial]``.
    random_state
        Seed of the 2-d embedding (``None``: not reproducible, faster).
    """
    import matplotlib.pyplot as plt

    latent_seq, latent_fish = trainer.get_latent()
    latent2d = _embed_2d(np.concatenate([latent_seq, latent_fish]), random_state)
    latent2d_seq, latent2d_fish = latent2d[: len(latent_seq)], latent2d[len(latent_seq) :]
    data_seq, data_fish = [posterior.gene_dataset for posterior in trainer.all_dataset]
    colors = plt.get_cmap("tab20")

    plt.figure(figsize=(25, 10))
    ax = plt.subplot(1, 3, 1)
    ax.scatter(*latent2d_seq.T, color="r", label="seq", alpha=0.5, s=0.5)
    ax.scatter(*latent2d_fish.T, color="b", label="spatial", alpha=0.5, s=0.5)
    ax.legend()
    for position, (title, data, points) in enumerate(
        (("Seq cells", data_seq, latent2d_seq), ("Spatial cells", data_fish, latent2d_fish)), start=2
    ):
        ax = plt.subplot(1, 3, position)
        labels = np.asarray(data.labels).ravel()
        cell_types = data.cell_types if data.cell_types is not None else np.unique(labels).astype(str)
        for i, cell_type in enumerate(cell_types):
            ax.scatter(*points[labels == i].T, color=colors(i % 20), label=str(cell_type)[:12], alpha=0.5, s=5)
        ax.legend()
        ax.set_title(title)


def imputation_score(trainer, data_fish, gene_ids_test: Sequence[int], normalized: bool = True) -> float:
    """Median over the hidden genes of the Spearman correlation between imputed and measured values.

    Parameters
    ----------
    trainer
        A trained :class:`~scvi.inference.JVAETrainer` over ``[data_seq, data_spatial_partial]``.
    data_fish
        The full spatial dataset (with the hidden genes), same cells in the same order.
    gene_ids_test
        Positions of the hidden genes among the model's output genes (and in ``data_fish``).
    normalized
        Compare normalised expression (measured counts divided by the cell's total) rather than
        counts.

    Returns
    -------
    float
        Median Spearman correlation (a gene imputed as all zeros counts as 0).
    """
    from scipy.stats import spearmanr

    gene_ids_test = np.asarray(gene_ids_test)
    _, fish_imputation = trainer.get_imputed_values(normalized=normalized)
    X = np.asarray(data_fish.X.todense() if hasattr(data_fish.X, "todense") else data_fish.X, dtype=np.float64)
    original = X[:, gene_ids_test]
    imputed = fish_imputation[:, gene_ids_test]
    if normalized:
        original = original / X.sum(axis=1, keepdims=True)
    correlations = [
        0.0 if np.all(imputed[:, g] == 0) else spearmanr(original[:, g], imputed[:, g])[0]
        for g in range(imputed.shape[1])
    ]
    return float(np.median(correlations))


def plot_gene_spatial(trainer, data_spatial, gene: Union[int, str]) -> None:
    """Draw a gene's measured and imputed expression at the cells' spatial coordinates.

    Parameters
    ----------
    trainer
        A trained :class:`~scvi.inference.JVAETrainer` over ``[data_seq, data_spatial_partial]``.
    data_spatial
        The full spatial dataset, with ``x_coord`` and ``y_coord`` cell attributes.
    gene
        Position of the gene among the model's output genes, or its name in the sequencing dataset.
    """
    import matplotlib.pyplot as plt

    data_seq = trainer.all_dataset[0].gene_dataset
    gene_id = list(data_seq.gene_names).index(gene) if isinstance(gene, str) else int(gene)
    x_coord = np.asarray(data_spatial.x_coord).ravel()
    y_coord = np.asarray(data_spatial.y_coord).ravel()
    X = np.asarray(data_spatial.X.todense() if hasattr(data_spatial.X, "todense") else data_spatial.X)
    _, imputed = trainer.get_imputed_values(normalized=True)

    fig, (ax_gt, ax) = plt.subplots(1, 2)
    for axis, values, title in (
        (ax_gt, X[:, gene_id] / (X.sum(axis=1) + 1), "Groundtruth"),
        (ax, imputed[:, gene_id], "Imputed"),
    ):
        order = np.argsort(values)  # strongest on top
        axis.scatter(
            x_coord[order],
            y_coord[order],
            c=np.log(1 + 100 * values[order]),
            s=20,
            edgecolors="none",
            marker="s",
            cmap="Reds",
        )
        axis.set_title(title)
        axis.axis("off")
    plt.tight_layout()
    plt.show()
