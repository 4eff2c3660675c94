"""Evaluation over a Posterior: ELBO, reconstruction error and importance-sampled marginal likelihood.

Exposed as :mod:`scvi.models.log_likelihood` functions (their scVI 0.6 location). Each iterates over
a posterior's minibatches ``x, local_l_mean, local_l_var, batch_index, labels`` and averages over
its cells.
"""
import logging
import math

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "compute_elbo",
    "compute_reconstruction_error",
    "compute_marginal_log_likelihood_scvi",
    "compute_marginal_log_likelihood_autozi",
]


def _unpack(tensors):
    sample_batch, local_l_mean, local_l_var, batch_index, labels = tuple(tensors)[:5]
    return sample_batch, local_l_mean, local_l_var, batch_index, labels


def _as_float(value) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


@torch.no_grad()
def compute_elbo(vae, posterior, **kwargs) -> float:
    """Average negative ELBO per cell: reconstruction error plus KL divergences.

    Parameters
    ----------
    vae
        A model whose ``forward`` returns ``(reconst_loss, kl_local, kl_global)``.
    posterior
        A :class:`~scvi.inference.Posterior` (an iterable of minibatches with ``indices``).
    **kwargs
        Passed to ``vae.forward``.

    Returns
    -------
    float
        ``sum over cells (reconst_loss + kl_local) / n_cells + kl_global / n_cells``.
    """
    total = 0.0
    kl_global = 0.0
    for tensors in posterior:
        x, local_l_mean, local_l_var, batch_index, labels = _unpack(tensors)
        reconst_loss, kl_local, kl_global = vae(
            x, local_l_mean, local_l_var, batch_index=batch_index, y=labels, **kwargs
        )
        total += torch.sum(reconst_loss + kl_local).item()
    n_cells = len(posterior.indices)
    return (total + _as_float(kl_global)) / n_cells


@torch.no_grad()
def compute_reconstruction_error(vae, posterior, **kwargs) -> float:
    """Average reconstruction error ``-log p(x | z, l)`` per cell (one posterior sample).

    Parameters
    ----------
    vae
        A model with ``inference`` and ``get_reconstruction_loss``.
    posterior
        A :class:`~scvi.inference.Posterior`.
    **kwargs
        Passed to ``vae.inference`` and ``vae.get_reconstruction_loss``.

    Returns
    -------
    float
    """
    total = 0.0
    for tensors in posterior:
        x, _, _, batch_index, labels = _unpack(tensors)
        outputs = vae.inference(x, batch_index, labels, **kwargs)
        reconst_loss = vae.get_reconstruction_loss(
            x,
            outputs["px_rate"],
            outputs["px_r"],
            outputs["px_dropout"],
            bernoulli_params=outputs.get("bernoulli_params", None),
            **kwargs,
        )
        total += torch.sum(reconst_loss).item()
    return total / len(posterior.indices)


def _normal_log_prob(value: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((value - mean) ** 2 / var + torch.log(var) + math.log(2 * math.pi))


def _log_importance_weight(out, z, local_l_mean, local_l_var, reconst_loss) -> torch.Tensor:
    """Per cell: ``log p(x|z,l) + log p(z) + log p(l) - log q(z|x) - log q(l|x)``."""
    log_p_z = _normal_log_prob(z, torch.zeros_like(z), torch.ones_like(z)).sum(-1)
    log_p_l = _normal_log_prob(out["library"], local_l_mean, local_l_var).sum(-1)
    log_q_z = _normal_log_prob(z, out["qz_m"], out["qz_v"]).sum(-1)
    log_q_l = _normal_log_prob(out["library"], out["ql_m"], out["ql_v"]).sum(-1)
    return log_p_z + log_p_l - reconst_loss - log_q_z - log_q_l


@torch.no_grad()
def compute_marginal_log_likelihood_scvi(vae, posterior, n_samples_mc: int = 100) -> float:
    """Importance-sampling estimate of the negative marginal log-likelihood ``-log p(x)`` per cell.

    ``log p(x) ~ logsumexp_k [log p(x|z_k,l_k) + log p(z_k) + log p(l_k) - log q(z_k|x) - log q(l_k|x)]
    - log K`` with ``K = n_samples_mc`` draws from the variational posterior. With the ``'ln'``
    latent distribution the weights are computed on the untransformed Gaussian draws (the
    Jacobian of the softmax cancels between prior and posterior).

    Parameters
    ----------
    vae
        A :class:`~scvi.models.VAE` (or subclass).
    posterior
        A :class:`~scvi.inference.Posterior`.
    n_samples_mc
        Number of importance samples per cell.

    Returns
    -------
    float
    """
    infer = getattr(vae, "_inference", vae.inference)
    total = 0.0
    for tensors in posterior:
        x, local_l_mean, local_l_var, batch_index, labels = _unpack(tensors)
        log_weights = torch.empty(x.size(0), n_samples_mc, device=x.device)
        for k in range(n_samples_mc):
            out = infer(x, batch_index, labels)
            z = out.get("untran_z", out["z"])
            reconst_loss = vae.get_reconstruction_loss(x, out["px_rate"], out["px_r"], out["px_dropout"])
            log_weights[:, k] = _log_importance_weight(out, z, local_l_mean, local_l_var, reconst_loss)
        total += (torch.logsumexp(log_weights, dim=-1) - np.log(n_samples_mc)).sum().item()
    return -total / len(posterior.indices)


@torch.no_grad()
def compute_marginal_log_likelihood_autozi(autozivae, posterior, n_samples_mc: int = 100) -> float:
    """Importance-sampling estimate of ``-log p(x)`` per cell for :class:`~scvi.models.AutoZIVAE`.

    The global Bernoulli parameters of the zero-inflation are sampled from their Beta posterior
    once per Monte Carlo sample and shared by all cells, as in scVI 0.6.

    Parameters
    ----------
    autozivae
        An AutoZIVAE model (``get_alphas_betas``, ``sample_from_beta_distribution``,
        ``reshape_bernoulli``).
    posterior
        A :class:`~scvi.inference.Posterior`.
    n_samples_mc
        Number of importance samples.

    Returns
    -------
    float
    """
    from torch.distributions import Beta

    ab = autozivae.get_alphas_betas(as_numpy=False)
    log_weights = torch.zeros(n_samples_mc)
    for k in range(n_samples_mc):
        bernoulli_params = autozivae.sample_from_beta_distribution(ab["alpha_posterior"], ab["beta_posterior"])
        for tensors in posterior:
            x, local_l_mean, local_l_var, batch_index, labels = _unpack(tensors)
            out = autozivae.inference(x, batch_index, labels)
            batch_params = autozivae.reshape_bernoulli(bernoulli_params, batch_index, labels)
            reconst_loss = autozivae.get_reconstruction_loss(
                x, out["px_rate"], out["px_r"], out["px_dropout"], batch_params
            )
            log_weights[k] += _log_importance_weight(out, out["z"], local_l_mean, local_l_var, reconst_loss).sum().cpu()
        log_p_d = Beta(ab["alpha_prior"], ab["beta_prior"]).log_prob(bernoulli_params).sum()
        log_q_d = Beta(ab["alpha_posterior"], ab["beta_posterior"]).log_prob(bernoulli_params).sum()
        log_weights[k] += (log_p_d - log_q_d).cpu()
    log_lkl = torch.logsumexp(log_weights, dim=-1).item() - np.log(n_samples_mc)
    return -log_lkl / len(posterior.indices)
