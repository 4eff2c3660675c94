"""Plots and scores of the gimVI tutorial (``import notebooks.utils.gimvi_tutorial as gimvi_utils``).

Same functions as the helper module shipped with the scVI 0.6 notebooks.
"""
import logging

import numpy as np

logger = logging.getLogger(__name__)


def _embed_2d(latent: np.ndarray) -> np.ndarray:
    """UMAP when umap-learn is installed, else t-SNE (also in the notebooks' quick mode: no JIT compilation)."""
    from _notebook_utils import notebook_test_mode

    try:
        if notebook_test_mode():
            raise ImportError("quick mode")
        from umap import UMAP

        return UMAP(random_state=0).fit_transform(latent)
    except ImportError:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(latent) - 1) / 3.0))
        return TSNE(perplexity=perplexity, random_state=0).fit_transform(latent)


def plot_umap(trainer) -> None:
    """Joint latent space of the sequencing and spatial cells: by dataset, and by cell type of each."""
    import matplotlib.pyplot as plt

    latent_seq, latent_fish = trainer.get_latent()
    latent2d = _embed_2d(np.concatenate([latent_seq, latent_fish]))
    latent2d_seq = latent2d[: latent_seq.shape[0]]
    latent2d_fish = latent2d[latent_seq.shape[0]:]
    data_seq, data_fish = [p.gene_dataset for p in trainer.all_dataset]
    colors = plt.get_cmap("tab20").colors
    plt.figure(figsize=(25, 10))
    ax = plt.subplot(1, 3, 1)
    ax.scatter(*latent2d_seq.T, color="r", label="seq", alpha=0.5, s=5)
    ax.scatter(*latent2d_fish.T, color="b", label="spatial", alpha=0.5, s=5)
    ax.legend()
    for position, (data, latent2d_here, title) in enumerate(
        ((data_seq, latent2d_seq, "Seq cells"), (data_fish, latent2d_fish, "Spatial cells")), start=2
    ):
        ax = plt.subplot(1, 3, position)
        labels = np.asarray(data.labels).ravel()
        for i, label in enumerate(data.cell_types):
            ax.scatter(*latent2d_here[labels == i].T, color=colors[i % len(colors)], label=str(label)[:12],
                       alpha=0.5, s=5)
        ax.legend()
        ax.set_title(title)


def imputation_score(trainer, data_fish, gene_ids_test, normalized: bool = True) -> float:
    """Median over the held-out genes of the Spearman correlation between measured and imputed values."""
    from scipy.stats import spearmanr

    _, fish_imputation = trainer.get_imputed_values(normalized=normalized)
    X = data_fish.X.toarray() if hasattr(data_fish.X, "toarray") else np.asarray(data_fish.X)
    original = X[:, gene_ids_test].astype(np.float64)
    imputed = fish_imputation[:, gene_ids_test]
    if normalized:
        original /= X.sum(axis=1).reshape(-1, 1)
    spearman_gene = []
    for g in range(imputed.shape[1]):
        if np.all(imputed[:, g] == 0) or np.all(original[:, g] == original[0, g]):
            correlation = 0.0
        else:
            correlation = spearmanr(original[:, g], imputed[:, g])[0]
        spearman_gene.append(correlation)
    return float(np.median(np.array(spearman_gene)))


def plot_gene_spatial(trainer, data_spatial, gene: int) -> None:
    """Measured (left) and imputed (right) normalised expression of ``gene`` at the cells' coordinates."""
    import matplotlib.pyplot as plt

    x_coord = np.asarray(data_spatial.x_coord).ravel()
    y_coord = np.asarray(data_spatial.y_coord).ravel()

    def order_by_strength(x, y, z):
        ind = np.argsort(z)
        return x[ind], y[ind], z[ind]

    def transform(data):
        return np.log(1 + 100 * data)

    X = data_spatial.X.toarray() if hasattr(data_spatial.X, "toarray") else np.asarray(data_spatial.X)
    plt.figure(figsize=(10, 5))
    ax = plt.subplot(1, 2, 1)
    normalized_data = X[:, gene] / X.sum(axis=1).ravel()
    x, y, z = order_by_strength(x_coord, y_coord, normalized_data)
    ax.scatter(x, y, c=transform(z), s=20, edgecolors="none", marker="s", cmap="Reds")
    ax.set_title("Groundtruth")
    ax.axis("off")

    _, imputed = trainer.get_imputed_values(normalized=True)
    x, y, z = order_by_strength(x_coord, y_coord, imputed[:, gene])
    ax = plt.subplot(1, 2, 2)
    ax.scatter(x, y, c=transform(z), s=20, edgecolors="none", marker="s", cmap="Reds")
    ax.set_title("Imputed")
    ax.axis("off")
    plt.tight_layout()
