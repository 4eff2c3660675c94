"""Shared pieces of the generative models: option tables, the loss tuple, closed-form KL terms.

SCANVI, TOTALVI, AutoZIVAE and JVAE reuse these rather than re-deriving them.
"""
import logging
from typing import Callable, Dict, Iterable, NamedTuple, Optional, Union

import torch
from torch import nn
from torch.distributions import Distribution

from .distributions import NegativeBinomial, StablePoisson, ZeroInflatedNegativeBinomial

logger = logging.getLogger(__name__)

DISPERSIONS = ("gene", "gene-batch", "gene-label", "gene-cell")
RECONSTRUCTION_LOSSES = ("zinb", "nb", "poisson")
LATENT_DISTRIBUTIONS = ("normal", "ln")


def check_option(name: str, value, allowed: Iterable) -> None:
    """Raise a ``ValueError`` naming ``name`` and the allowed values when ``value`` is not one of them.

    Parameters
    ----------
    name
        Name of the parameter, e.g. ``"dispersion"``.
    value
        The value given.
    allowed
        The allowed values.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{name}` must be one of {listed}; got {value!r}")


def check_dispersion_covariates(dispersion: str, n_batch: int, n_labels: int) -> None:
    """Raise a ``ValueError`` for a per-batch / per-label dispersion without batches / labels."""
    if dispersion == "gene-batch" and n_batch < 1:
        raise ValueError("dispersion='gene-batch' needs `n_batch` >= 1")
    if dispersion == "gene-label" and n_labels < 1:
        raise ValueError("dispersion='gene-label' needs `n_labels` >= 1")


def dispersion_parameter(dispersion: str, n_genes: int, n_batch: int, n_labels: int) -> Optional[nn.Parameter]:
    """Random log inverse dispersion: ``(n_genes,)``, ``(n_genes, n_batch)`` or ``(n_genes, n_labels)``.

    ``None`` for ``'gene-cell'`` (decoded, not a parameter).
    """
    if dispersion == "gene":
        return nn.Parameter(torch.randn(n_genes))
    if dispersion == "gene-batch":
        return nn.Parameter(torch.randn(n_genes, n_batch))
    if dispersion == "gene-label":
        return nn.Parameter(torch.randn(n_genes, n_labels))
    return None


class LossOutput(NamedTuple):
    """What a model's ``forward`` returns; unpacks as ``reconst_loss, kl_local, kl_global = ...``.

    Attributes
    ----------
    reconst_loss
        Per-cell loss term that is not KL-annealed, shape ``(n,)``.
    kl_local
        Per-cell KL term annealed by the trainer's ``kl_weight``, shape ``(n,)``.
    kl_global
        KL term of global latent variables (a scalar; ``0.0`` when there is none).
    """

    reconst_loss: torch.Tensor
    kl_local: torch.Tensor
    kl_global: Union[torch.Tensor, float]


def kl_normal(
    q_m: torch.Tensor,
    q_v: torch.Tensor,
    p_m: Optional[torch.Tensor] = None,
    p_v: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Element-wise ``KL(N(q_m, q_v) || N(p_m, p_v))`` between Gaussians given by mean and *variance*.

    Without ``p_m`` / ``p_v`` the prior is the standard normal. Equal to
    ``torch.distributions.kl_divergence(Normal(q_m, q_v.sqrt()), Normal(p_m, p_v.sqrt()))``
    without building distribution objects (this sits in the training hot path).

    Parameters
    ----------
    q_m, q_v
        Mean and variance of the first Gaussian.
    p_m, p_v
        Mean and variance of the second Gaussian, broadcastable with ``q_m``.

    Returns
    -------
    torch.Tensor
        The broadcast shape of the inputs.
    """
    if p_m is None and p_v is None:
        return 0.5 * (q_v + q_m * q_m - 1.0 - torch.log(q_v))
    if p_m is None:
        p_m = torch.zeros_like(q_m)
    if p_v is None:
        p_v = torch.ones_like(q_v)
    return 0.5 * (torch.log(p_v) - torch.log(q_v) + (q_v + (q_m - p_m) ** 2) / p_v - 1.0)


def gaussian_log_prob(value: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Element-wise log-density of ``N(mean, var)`` at ``value`` (``var`` is a variance)."""
    return -0.5 * ((value - mean) ** 2 / var + torch.log(var) + 1.8378770664093453)  # log(2 pi)


def reparameterize_gaussian(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Differentiable draw from ``N(mu, var)`` (``var`` is a variance)."""
    return mu + var.sqrt() * torch.randn_like(mu)


def _zinb(px_rate, px_r, px_dropout) -> Distribution:
    return ZeroInflatedNegativeBinomial(mu=px_rate, theta=px_r, zi_logits=px_dropout, validate_args=False)


def _nb(px_rate, px_r, px_dropout) -> Distribution:
    return NegativeBinomial(mu=px_rate, theta=px_r, validate_args=False)


def _poisson(px_rate, px_r, px_dropout) -> Distribution:
    return StablePoisson(px_rate, validate_args=False)


#: ``reconstruction_loss`` name -> factory ``(px_rate, px_r, px_dropout) -> Distribution``.
LIKELIHOODS: Dict[str, Callable[..., Distribution]] = {"zinb": _zinb, "nb": _nb, "poisson": _poisson}
