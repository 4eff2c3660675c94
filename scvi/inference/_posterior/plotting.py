"""t-SNE views of the latent space (matplotlib and scikit-learn imported when used)."""
import logging
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

from scvi._utils import atomic_path, check_random_state

logger = logging.getLogger(__name__)

COLOR_BY = ("", "scalar", "batches", "labels", "batches and labels")


def _scatter_groups(axis, latent, groups, n_groups, names):
    """One scatter per group ``0..n_groups-1`` with its name in the legend."""
    for i, name in zip(range(n_groups), names):
        axis.scatter(latent[groups == i, 0], latent[groups == i, 1], label=str(name))
    axis.legend()


class PlottingMixin:
    """``show_t_sne`` / ``apply_t_sne``."""

    @staticmethod
    def apply_t_sne(latent, n_samples: int = 1000, *, random_state=None) -> Tuple:
        """Subsample ``n_samples`` cells and embed them in 2D with t-SNE.

        Parameters
        ----------
        latent
            Shape ``(n_cells, n_latent)``; returned as is (subsampled) when ``n_latent == 2``.
        n_samples
            Cells to keep (all when 0 or ``None``).
        random_state
            Seed or generator of the subsampling and of t-SNE.

        Returns
        -------
        embedding
            Shape ``(min(n_samples, n_cells), 2)``.
        idx_t_sne
            The indices of the kept cells.
        """
        rng = check_random_state(random_state)
        idx_t_sne = rng.permutation(len(latent))[:n_samples] if n_samples else np.arange(len(latent))
        latent = latent[idx_t_sne]
        if latent.shape[1] != 2:
            from sklearn.manifold import TSNE

            perplexity = min(30.0, max(1.0, (len(latent) - 1) / 3))
            latent = TSNE(perplexity=perplexity, random_state=int(rng.integers(2**31 - 1))).fit_transform(latent)
        return latent, idx_t_sne

    @torch.no_grad()
    def show_t_sne(
        self,
        n_samples=1000,
        color_by="",
        save_name="",
        latent=None,
        batch_indices=None,
        labels=None,
        n_batch=None,
        *,
        random_state=None,
    ):
        """Scatter plot of a t-SNE of the latent space, coloured by batch and/or label.

        Parameters
        ----------
        n_samples
            Cells to plot.
        color_by
            ``""``, ``"scalar"``, ``"batches"``, ``"labels"`` or ``"batches and labels"``.
        save_name
            File the figure is saved to (nothing saved when empty).
        latent, batch_indices, labels
            A precomputed 2D embedding and its annotations (default: sampled from the posterior).
        n_batch
            Number of batches (default: the dataset's).
        random_state
            Seed or generator of the subsampling and of t-SNE.

        Returns
        -------
        matplotlib.figure.Figure
        """
        if color_by not in COLOR_BY:
            raise ValueError(f"`color_by` must be one of {COLOR_BY}; got {color_by!r}")
        import matplotlib.pyplot as plt

        if latent is None:
            latent, batch_indices, labels = self.get_latent(give_mean=False)
            latent, idx_t_sne = self.apply_t_sne(latent, n_samples, random_state=random_state)
            batch_indices = batch_indices[idx_t_sne].ravel()
            labels = labels[idx_t_sne].ravel()
        n_batch = self.gene_dataset.n_batches if n_batch is None else n_batch
        n_labels = self.gene_dataset.n_labels
        cell_types = getattr(self.gene_dataset, "cell_types", None)
        label_names = list(cell_types) if cell_types is not None else [str(i) for i in range(n_labels)]

        if color_by == "batches and labels":
            figure, axes = plt.subplots(1, 2, figsize=(14, 7))
            _scatter_groups(axes[0], latent, np.ravel(batch_indices), n_batch, range(n_batch))
            axes[0].set_title("batch coloring")
            _scatter_groups(axes[1], latent, np.ravel(labels), n_labels, label_names)
            axes[1].set_title("label coloring")
            for axis in axes:
                axis.axis("off")
        else:
            figure, axis = plt.subplots(figsize=(10, 10))
            if color_by == "":
                axis.scatter(latent[:, 0], latent[:, 1])
            elif color_by == "scalar":
                axis.scatter(latent[:, 0], latent[:, 1], c=np.ravel(labels))
            elif color_by == "batches":
                _scatter_groups(axis, latent, np.ravel(batch_indices), n_batch, range(n_batch))
            else:
                _scatter_groups(axis, latent, np.ravel(labels), n_labels, label_names)
            axis.axis("off")
        figure.tight_layout()
        if save_name:
            with atomic_path(save_name) as tmp:
                figure.savefig(tmp, format=_image_format(save_name))
        return figure


def _image_format(path) -> str:
    """Image format from the file extension (``png`` when there is none)."""
    return Path(path).suffix.lstrip(".").lower() or "png"
