"""Scores of a posterior: likelihood bounds, batch mixing, clustering, imputation error.

Each metric usable for early stopping carries ``mode`` (``"min"`` or ``"max"``).
"""
import logging
import os
from typing import List, Optional, Tuple

import numpy as np
import torch

from scvi._utils import check_random_state

from ..posterior_utils import (
    entropy_batch_mixing,
    knn_purity,
    nn_overlap,
    plot_imputation,
    unsupervised_clustering_accuracy,
)

logger = logging.getLogger(__name__)

PREDICTION_ALGORITHMS = ("knn", "gmm")


class MetricsMixin:
    """Metrics computed over the posterior's cells."""

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def elbo(self) -> float:
        """Negative evidence lower bound per cell (lower is better)."""
        from scvi.models.log_likelihood import compute_elbo

        value = float(compute_elbo(self.model, self))
        logger.debug("ELBO : %.4f", value)
        return value

    elbo.mode = "min"

    @torch.no_grad()
    def reconstruction_error(self) -> float:
        """Negative log-likelihood of the counts given ``z`` and ``l``, per cell (lower is better)."""
        from scvi.models.log_likelihood import compute_reconstruction_error

        value = float(compute_reconstruction_error(self.model, self))
        logger.debug("Reconstruction Error : %.4f", value)
        return value

    reconstruction_error.mode = "min"

    @torch.no_grad()
    def marginal_ll(self, n_mc_samples: Optional[int] = 1000) -> float:
        """Importance-sampling estimate of the negative marginal log-likelihood per cell.

        Parameters
        ----------
        n_mc_samples
            Monte-Carlo samples per cell.
        """
        from scvi.models.log_likelihood import (
            compute_marginal_log_likelihood_autozi,
            compute_marginal_log_likelihood_scvi,
        )

        if getattr(self.model, "reconstruction_loss", None) == "autozinb":
            value = compute_marginal_log_likelihood_autozi(self.model, self, n_mc_samples)
        else:
            value = compute_marginal_log_likelihood_scvi(self.model, self, n_mc_samples)
        value = float(value)
        logger.debug("True LL : %.4f", value)
        return value

    marginal_ll.mode = "min"

    # ------------------------------------------------------------------ latent-space structure
    @torch.no_grad()
    def entropy_batch_mixing(self, **kwargs) -> Optional[float]:
        """Entropy of the batch mixture in latent neighbourhoods (two batches only; else ``None``).

        Parameters
        ----------
        **kwargs
            Passed to :func:`scvi.inference.posterior_utils.entropy_batch_mixing`.
        """
        if self.gene_dataset.n_batches != 2:
            logger.info("entropy_batch_mixing needs exactly 2 batches; got %d", self.gene_dataset.n_batches)
            return None
        latent, batch_indices, _ = self.get_latent()[:3]
        score = entropy_batch_mixing(latent, batch_indices.ravel(), **kwargs)
        logger.debug("Entropy batch mixing : %s", score)
        return score

    entropy_batch_mixing.mode = "max"

    @torch.no_grad()
    def knn_purity(self) -> float:
        """Mean over labels of the fraction of latent nearest neighbours with the same label."""
        latent, _, labels = self.get_latent()[:3]
        score = knn_purity(latent, labels)
        logger.debug("KNN purity score : %s", score)
        return score

    knn_purity.mode = "max"

    @torch.no_grad()
    def clustering_scores(self, prediction_algorithm: str = "knn", *, random_state=None) -> Optional[Tuple]:
        """Silhouette, NMI, ARI and unsupervised clustering accuracy of the latent space.

        The latent means are clustered into ``n_labels`` clusters and compared with the labels
        (``None`` when the dataset has a single label).

        Parameters
        ----------
        prediction_algorithm
            ``"knn"`` (k-means with 20 restarts; scVI 0.6 used 200) or ``"gmm"`` (Gaussian mixture).
        random_state
            Seed or generator of the clustering.

        Returns
        -------
        asw, nmi, ari, uca
            Floats.
        """
        if prediction_algorithm not in PREDICTION_ALGORITHMS:
            raise ValueError(
                f"`prediction_algorithm` must be one of {PREDICTION_ALGORITHMS}; got {prediction_algorithm!r}"
            )
        if self.gene_dataset.n_labels <= 1:
            logger.info("clustering_scores needs more than one label")
            return None
        from sklearn.cluster import KMeans
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
        from sklearn.mixture import GaussianMixture

        seed = int(check_random_state(random_state).integers(2**31 - 1))
        latent, _, labels = self.get_latent()[:3]
        n_labels = self.gene_dataset.n_labels
        if prediction_algorithm == "knn":
            labels_pred = KMeans(n_labels, n_init=20, random_state=seed).fit_predict(latent)
        else:
            labels_pred = GaussianMixture(n_labels, random_state=seed).fit(latent).predict(latent)
        asw = silhouette_score(latent, labels)
        nmi = normalized_mutual_info_score(labels, labels_pred)
        ari = adjusted_rand_score(labels, labels_pred)
        uca = unsupervised_clustering_accuracy(labels, labels_pred)[0]
        logger.debug("Clustering Scores: Silhouette %.4f NMI %.4f ARI %.4f UCA %.4f", asw, nmi, ari, uca)
        return asw, nmi, ari, uca

    @torch.no_grad()
    def nn_overlap_score(self, **kwargs) -> Optional[Tuple]:
        """Agreement of the latent and protein nearest-neighbour graphs (CITE-seq datasets only).

        Returns
        -------
        spearman_correlation, fold_enrichment
            ``None`` when the dataset has no ``protein_expression_clr``.
        """
        if not hasattr(self.gene_dataset, "protein_expression_clr"):
            return None
        latent, _, _ = self.sequential().get_latent()[:3]
        protein_data = self.gene_dataset.protein_expression_clr[self.indices]
        spearman_correlation, fold_enrichment = nn_overlap(latent, protein_data, **kwargs)
        logger.debug("Overlap Scores: Spearman %.4f Fold enrichment %.4f", spearman_correlation, fold_enrichment)
        return spearman_correlation, fold_enrichment

    # ------------------------------------------------------------------ imputation
    @torch.no_grad()
    def imputation_score(
        self, original_list: List = None, imputed_list: List = None, n_samples: int = 1
    ) -> float:
        """Median absolute error of the imputed values at the corrupted entries.

        Parameters
        ----------
        original_list, imputed_list
            Output of :meth:`imputation_list` (computed when not given).
        n_samples
            Posterior samples per cell when computing them.
        """
        if original_list is None or imputed_list is None:
            original_list, imputed_list = self.imputation_list(n_samples=n_samples)
        original = np.concatenate(original_list) if len(original_list) else np.zeros(0)
        imputed = np.concatenate(imputed_list) if len(imputed_list) else np.zeros(0)
        if original.size == 0:
            logger.info("No difference between corrupted dataset and uncorrupted dataset")
            return 0.0
        return float(np.median(np.abs(original - imputed)))

    @torch.no_grad()
    def imputation_benchmark(
        self,
        n_samples: int = 8,
        show_plot: bool = True,
        title_plot: str = "imputation",
        save_path: str = "",
    ) -> Tuple:
        """Imputation errors at the corrupted entries, plotted and saved to ``save_path/title_plot.png``.

        Parameters
        ----------
        n_samples
            Posterior samples per cell.
        show_plot
            Also show the figure.
        title_plot
            Title and file name (without extension).
        save_path
            Folder of the figure.

        Returns
        -------
        original_list, imputed_list
            As :meth:`imputation_list`.
        """
        original_list, imputed_list = self.imputation_list(n_samples=n_samples)
        median_score = self.imputation_score(original_list=original_list, imputed_list=imputed_list)
        per_cell = [np.median(np.abs(o - i)) if len(o) else 0.0 for o, i in zip(original_list, imputed_list)]
        logger.debug("Median of Median: %.4f, Mean of Median for each cell: %.4f", median_score, np.mean(per_cell))
        plot_imputation(
            np.concatenate(original_list),
            np.concatenate(imputed_list),
            show_plot=show_plot,
            title=os.path.join(save_path, title_plot),
        )
        return original_list, imputed_list
