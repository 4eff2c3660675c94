"""AutoZI [Clivio19]_: scVI with a gene-specific choice between a NB and a ZINB likelihood.

For each gene ``g`` (or gene and batch, or gene and label) a global latent variable
``delta_g ~ Beta(alpha, beta)`` is the probability that the gene is *not* zero-inflated; the
counts follow the mixture ``delta_g * NB + (1 - delta_g) * ZINB``. The variational posterior
``q(delta_g) = Beta(alpha^g, beta^g)`` is learnt along with scVI's encoders and decoder.
"""
import logging
import math
from typing import Dict, Optional, Union

import numpy as np
import torch
from torch import nn
from torch.distributions import Beta, Gamma, kl_divergence

from ._base import LIKELIHOODS, LossOutput, check_option, kl_normal
from .distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from .utils import one_hot
from .vae import _LEGACY_INFERENCE_KEYS, VAE

logger = logging.getLogger(__name__)

# Smallest Beta parameter used when sampling (see `AutoZIVAE.sample_from_beta_distribution`).
_MIN_CONCENTRATION = 1e-3

__all__ = ["AutoZIVAE", "NegativeBinomial", "VAE", "ZeroInflatedNegativeBinomial", "one_hot"]

ZERO_INFLATIONS = ("gene", "gene-batch", "gene-label", "gene-cell")


def _check_open_unit(name: str, value: Optional[float]) -> None:
    if value is not None and not 0.0 < float(value) < 1.0:
        raise ValueError(f"`{name}` must be None or in the open interval (0, 1); got {value!r}")


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class AutoZIVAE(VAE):
    """AutoZI variational auto-encoder [Clivio19]_.

    Parameters
    ----------
    n_input
        Number of input genes.
    alpha_prior, beta_prior
        Parameters of the ``Beta`` prior of the zero-inflation Bernoulli parameters, in ``(0, 1)``.
        When only one is ``None`` it is set to one minus the other; when both are ``None`` the prior
        is learnt (empirical Bayes).
    minimal_dropout
        Lower bound of the zero-inflation probability of the ZINB component, in ``[0, 1)``
        (0 is allowed but makes the mixture ill-defined).
    zero_inflation
        ``'gene'`` (one Bernoulli parameter per gene), ``'gene-batch'`` (per gene and batch),
        ``'gene-label'`` (per gene and label). ``'gene-cell'`` is not implemented (as in scVI 0.6).
    **args
        Other :class:`~scvi.models.VAE` parameters (``n_batch``, ``n_labels``, ``n_hidden``,
        ``n_latent``, ``dispersion`` ...). ``reconstruction_loss`` must not be given: it is
        ``'autozinb'``.

    Raises
    ------
    ValueError
        For ``reconstruction_loss``, priors outside ``(0, 1)``, ``minimal_dropout`` outside
        ``[0, 1)``, an unknown ``zero_inflation``, or ``'gene-batch'`` / ``'gene-label'`` without
        batches / labels.
    NotImplementedError
        For ``zero_inflation='gene-cell'``.

    Examples
    --------
    >>> gene_dataset = CortexDataset()
    >>> autozivae = AutoZIVAE(gene_dataset.nb_genes, alpha_prior=0.5, beta_prior=0.5, minimal_dropout=0.01)
    """

    def __init__(
        self,
        n_input: int,
        alpha_prior: Optional[float] = 0.5,
        beta_prior: Optional[float] = 0.5,
        minimal_dropout: float = 0.01,
        zero_inflation: str = "gene",
        **args,
    ) -> None:
        if "reconstruction_loss" in args:
            raise ValueError("No reconstruction loss must be specified for AutoZI : it is 'autozinb'.")
        check_option("zero_inflation", zero_inflation, ZERO_INFLATIONS)
        if zero_inflation == "gene-cell":
            raise NotImplementedError(
                "zero_inflation='gene-cell' is not implemented for AutoZI; use 'gene', 'gene-batch' or 'gene-label'"
            )
        _check_open_unit("alpha_prior", alpha_prior)
        _check_open_unit("beta_prior", beta_prior)
        if not 0.0 <= float(minimal_dropout) < 1.0:
            raise ValueError(f"`minimal_dropout` must be in [0, 1); got {minimal_dropout!r}")
        super().__init__(n_input, **args)
        if zero_inflation == "gene-batch" and self.n_batch < 1:
            raise ValueError("zero_inflation='gene-batch' needs `n_batch` >= 1")
        if zero_inflation == "gene-label" and self.n_labels < 1:
            raise ValueError("zero_inflation='gene-label' needs `n_labels` >= 1")
        self.zero_inflation = zero_inflation
        self.reconstruction_loss = "autozinb"
        self.minimal_dropout = float(minimal_dropout)

        # alpha + beta = 1 when only one of them is given
        if beta_prior is None and alpha_prior is not None:
            beta_prior = 1.0 - alpha_prior
        if alpha_prior is None and beta_prior is not None:
            alpha_prior = 1.0 - beta_prior

        # Beta parameters live in (0, 1): they are stored as logits.
        n_cat = {"gene": None, "gene-batch": self.n_batch, "gene-label": self.n_labels}[zero_inflation]
        posterior_shape = (n_input,) if n_cat is None else (n_input, n_cat)
        prior_shape = (1,) if n_cat is None else (1, n_cat)
        self.alpha_posterior_logit = nn.Parameter(torch.randn(posterior_shape))
        self.beta_posterior_logit = nn.Parameter(torch.randn(posterior_shape))
        for name, value in (("alpha_prior_logit", alpha_prior), ("beta_prior_logit", beta_prior)):
            if value is None:  # empirical Bayes: learnt
                setattr(self, name, nn.Parameter(torch.randn(prior_shape)))
            else:  # fixed; follows the model across devices, not saved (as scVI 0.6)
                self.register_buffer(name, torch.tensor([_logit(float(value))]), persistent=False)

    # ---------------------------------------------------------------- Beta distributions
    def get_alphas_betas(self, as_numpy: bool = True) -> Dict[str, Union[torch.Tensor, np.ndarray]]:
        """Parameters of the prior and variational posterior Beta distributions.

        Parameters
        ----------
        as_numpy
            Return numpy arrays (detached) instead of tensors.

        Returns
        -------
        dict
            ``alpha_posterior``, ``beta_posterior`` (shape ``(n_input,)`` for ``'gene'``,
            ``(n_input, n_batch)`` / ``(n_input, n_labels)`` otherwise) and ``alpha_prior``,
            ``beta_prior`` (shape ``(1,)`` or ``(1, n_cat)`` when learnt per category).
        """
        outputs = {
            "alpha_posterior": torch.sigmoid(self.alpha_posterior_logit),
            "beta_posterior": torch.sigmoid(self.beta_posterior_logit),
            "alpha_prior": torch.sigmoid(self.alpha_prior_logit),
            "beta_prior": torch.sigmoid(self.beta_prior_logit),
        }
        if as_numpy:
            outputs = {key: value.detach().cpu().numpy() for key, value in outputs.items()}
        return outputs

    def sample_from_beta_distribution(
        self,
        alpha: torch.Tensor,
        beta: torch.Tensor,
        eps_gamma: float = 1e-30,
        eps_sample: float = 1e-7,
    ) -> torch.Tensor:
        """Reparameterised draw from ``Beta(alpha, beta)``, computed as ``X / (X + Y)`` in log space.

        ``X ~ Gamma(alpha, 1)`` and ``Y ~ Gamma(beta, 1)``; the result is squeezed into
        ``[eps_sample, 1 - eps_sample]`` so that its logarithm and that of its complement are finite.

        Parameters
        ----------
        alpha, beta
            Parameters, same shape.
        eps_gamma
            Added to the Gamma draws before their logarithm.
        eps_sample
            Margin from 0 and 1.

        Returns
        -------
        torch.Tensor
            Same shape as ``alpha``.
        """
        # Gamma(a, 1) draws behave like U ** (1 / a): for small `a` they underflow float32 to 0 and
        # the reparameterised gradient becomes NaN. The (tiny, per-gene) parameters are therefore
        # sampled in float64, with concentrations kept above _MIN_CONCENTRATION.
        alpha64 = alpha.double().clamp(min=_MIN_CONCENTRATION)
        beta64 = beta.double().clamp(min=_MIN_CONCENTRATION)
        log_x = torch.log(Gamma(alpha64, torch.ones_like(alpha64)).rsample() + eps_gamma)
        log_y = torch.log(Gamma(beta64, torch.ones_like(beta64)).rsample() + eps_gamma)
        sample = torch.exp(log_x - torch.logaddexp(log_x, log_y)).to(alpha.dtype)
        return eps_sample + (1.0 - 2.0 * eps_sample) * sample

    def reshape_bernoulli(
        self,
        bernoulli_params: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        y: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Bernoulli parameters of each cell for its batch / label.

        Parameters
        ----------
        bernoulli_params
            Shape ``([n_samples,] n_input[, n_cat])``.
        batch_index
            Batch of each cell, shape ``(n, 1)`` (``'gene-batch'``).
        y
            Label of each cell, shape ``(n, 1)`` (``'gene-label'``).

        Returns
        -------
        torch.Tensor
            ``'gene'``: ``(n_input,)`` (``(n_samples, 1, n_input)`` with a sample axis), so that it
            broadcasts against ``(..., n, n_input)``; otherwise ``([n_samples,] n, n_input)``.
        """
        if self.zero_inflation == "gene":
            return bernoulli_params.unsqueeze(-2) if bernoulli_params.dim() == 2 else bernoulli_params
        name, cat = ("batch_index", batch_index) if self.zero_inflation == "gene-batch" else ("y", y)
        if cat is None:
            raise ValueError(f"zero_inflation={self.zero_inflation!r} needs `{name}`")
        # (..., n_input, n_cat) -> (..., n, n_input)
        return bernoulli_params.transpose(-1, -2)[..., cat.reshape(-1).long(), :]

    def sample_bernoulli_params(
        self,
        batch_index: Optional[torch.Tensor] = None,
        y: Optional[torch.Tensor] = None,
        n_samples: int = 1,
    ) -> torch.Tensor:
        """Draw the Bernoulli parameters (probability of *no* zero-inflation) from their posterior.

        Parameters
        ----------
        batch_index, y
            Batch and label of each cell, shape ``(n, 1)``.
        n_samples
            Number of draws; above one, a leading sample axis is added.

        Returns
        -------
        torch.Tensor
            See :meth:`reshape_bernoulli`.
        """
        outputs = self.get_alphas_betas(as_numpy=False)
        alpha, beta = outputs["alpha_posterior"], outputs["beta_posterior"]
        if n_samples > 1:
            alpha = alpha.unsqueeze(0).expand((n_samples,) + alpha.shape)
            beta = beta.unsqueeze(0).expand((n_samples,) + beta.shape)
        return self.reshape_bernoulli(self.sample_from_beta_distribution(alpha, beta), batch_index, y)

    def compute_global_kl_divergence(self) -> torch.Tensor:
        """``KL(q(delta) || p(delta))`` summed over all Bernoulli parameters (a scalar)."""
        outputs = self.get_alphas_betas(as_numpy=False)
        posterior = Beta(outputs["alpha_posterior"], outputs["beta_posterior"])
        prior = Beta(outputs["alpha_prior"], outputs["beta_prior"])
        return kl_divergence(posterior, prior).sum()

    # ---------------------------------------------------------------- generative model
    def rescale_dropout(self, px_dropout: torch.Tensor, eps_log: float = 1e-8) -> torch.Tensor:
        """Zero-inflation logits bounded below by ``minimal_dropout`` in probability.

        Parameters
        ----------
        px_dropout
            Decoded logits, any shape.
        eps_log
            Stabilises the logit.

        Returns
        -------
        torch.Tensor
            Logits of ``minimal_dropout + (1 - minimal_dropout) * sigmoid(px_dropout)``, same shape.
        """
        if self.minimal_dropout <= 0.0:
            return px_dropout
        prob = self.minimal_dropout + (1.0 - self.minimal_dropout) * torch.sigmoid(px_dropout)
        return torch.log(prob / (1.0 - prob + eps_log))

    def _inference(
        self,
        x: torch.Tensor,
        batch_index=None,
        y=None,
        n_samples: int = 1,
        transform_batch: Optional[int] = None,
        eps_log: float = 1e-8,
    ) -> Dict[str, torch.Tensor]:
        outputs = super()._inference(x, batch_index, y, n_samples=n_samples, transform_batch=transform_batch)
        outputs["px_dropout"] = self.rescale_dropout(outputs["px_dropout"], eps_log=eps_log)
        # the Bernoulli parameters describe the observed cells: their own batch
        outputs["bernoulli_params"] = self.sample_bernoulli_params(batch_index, y, n_samples=n_samples)
        return outputs

    def inference(
        self,
        x,
        batch_index: Optional[torch.Tensor] = None,
        y: Optional[torch.Tensor] = None,
        n_samples: int = 1,
        eps_log: float = 1e-8,
        transform_batch: Optional[int] = None,
    ) -> Dict[str, torch.Tensor]:
        """:meth:`VAE.inference` with bounded dropout logits and sampled Bernoulli parameters.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        batch_index, y
            Batch and label of each cell, shape ``(n, 1)``.
        n_samples
            Posterior draws (leading sample axis above one).
        eps_log
            Stabilises the rescaled dropout logits.
        transform_batch
            Decode every cell as if from this batch.

        Returns
        -------
        dict
            The keys of :meth:`VAE.inference` plus ``bernoulli_params`` (see
            :meth:`reshape_bernoulli`).
        """
        outputs = self._inference(
            x, batch_index, y, n_samples=n_samples, transform_batch=transform_batch, eps_log=eps_log
        )
        return {key: outputs[key] for key in _LEGACY_INFERENCE_KEYS + ("bernoulli_params",)}

    def get_reconstruction_loss(
        self,
        x: torch.Tensor,
        px_rate: torch.Tensor,
        px_r: torch.Tensor,
        px_dropout: torch.Tensor,
        bernoulli_params: torch.Tensor,
        eps_log: float = 1e-8,
        **kwargs,
    ) -> torch.Tensor:
        """Per-cell ``-log [delta NB(x) + (1 - delta) ZINB(x)]`` summed over genes.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        px_rate, px_r, px_dropout
            Mean, inverse dispersion and zero-inflation logits.
        bernoulli_params
            Probability ``delta`` of no zero-inflation, broadcastable to ``px_rate``.
        eps_log
            Stabilises ``log(delta)`` and ``log(1 - delta)``.
        **kwargs
            Ignored.

        Returns
        -------
        torch.Tensor
            Shape ``(..., n)``.
        """
        log_zinb = LIKELIHOODS["zinb"](px_rate, px_r, px_dropout).log_prob(x)
        log_nb = LIKELIHOODS["nb"](px_rate, px_r, px_dropout).log_prob(x)
        ll_zinb = torch.log(1.0 - bernoulli_params + eps_log) + log_zinb
        ll_nb = torch.log(bernoulli_params + eps_log) + log_nb
        return -torch.logaddexp(ll_zinb, ll_nb).sum(dim=-1)

    def forward(self, x, local_l_mean, local_l_var, batch_index=None, y=None) -> LossOutput:
        """Reconstruction loss and KL divergences of a minibatch.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        local_l_mean, local_l_var
            Mean and variance of the log-library-size prior, shape ``(n, 1)``.
        batch_index, y
            Batch and label of each cell, shape ``(n, 1)``.

        Returns
        -------
        LossOutput
            ``reconst_loss`` (shape ``(n,)``, including the library-size KL), ``kl_local``
            (``KL(q(z|x) || p(z))``, shape ``(n,)``) and ``kl_global``, the Beta KL of the Bernoulli
            parameters (a scalar; the trainer adds it once per minibatch).
        """
        outputs = self._inference(x, batch_index, y)
        reconst_loss = self.get_reconstruction_loss(
            x, outputs["px_rate"], outputs["px_r"], outputs["px_dropout"], outputs["bernoulli_params"]
        )
        kl_divergence_z = kl_normal(outputs["qz_m"], outputs["qz_v"]).sum(dim=1)
        kl_divergence_l = kl_normal(outputs["ql_m"], outputs["ql_v"], local_l_mean, local_l_var).sum(dim=1)
        return LossOutput(reconst_loss + kl_divergence_l, kl_divergence_z, self.compute_global_kl_divergence())
