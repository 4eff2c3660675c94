"""Latent representation of the posterior's cells."""
import logging
from typing import Optional, Tuple

import numpy as np
import torch

logger = logging.getLogger(__name__)


class LatentMixin:
    """``get_latent``: the posterior mean (or a sample) of ``z`` for every cell."""

    def _latent_batch(self, tensors, give_mean: bool) -> torch.Tensor:
        """``z`` for one minibatch, shape ``(n, n_latent)`` (overridden by models with other inputs)."""
        return self.model.sample_from_posterior_z(tensors[0], give_mean=give_mean)

    @torch.no_grad()
    def get_latent(self, give_mean: Optional[bool] = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latent representation, batch and label of every cell, in iteration order.

        Parameters
        ----------
        give_mean
            Return the mean of ``q(z | x)`` (else one sample).

        Returns
        -------
        latent
            Shape ``(nb_cells, n_latent)``.
        batch_indices
            Shape ``(nb_cells, 1)``.
        labels
            Shape ``(nb_cells,)``.
        """
        latent, batch_indices, labels = [], [], []
        for tensors in self:
            latent.append(self._latent_batch(tensors, give_mean).cpu())
            batch_indices.append(tensors[3].cpu())
            labels.append(tensors[4].cpu())
        return (
            torch.cat(latent).numpy(),
            torch.cat(batch_indices).numpy(),
            torch.cat(labels).numpy().ravel(),
        )
