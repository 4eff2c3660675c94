"""scVI's variational auto-encoder (:class:`VAE`) and its linearly decoded variant (:class:`LDVAE`)."""
import logging
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._base import (
    DISPERSIONS,
    LATENT_DISTRIBUTIONS,
    LIKELIHOODS,
    RECONSTRUCTION_LOSSES,
    LossOutput,
    check_dispersion_covariates,
    check_option,
    dispersion_parameter,
    kl_normal,
)
from . import _fused_likelihood as fused_likelihood
from . import _fused_step as fused_step
from .distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from .log_likelihood import LOG_EPS
from .modules import DecoderSCVI, Encoder, LinearDecoderSCVI
from .utils import one_hot

logger = logging.getLogger(__name__)

__all__ = [
    "VAE",
    "LDVAE",
    "DecoderSCVI",
    "Encoder",
    "LinearDecoderSCVI",
    "NegativeBinomial",
    "ZeroInflatedNegativeBinomial",
    "one_hot",
]

_LEGACY_INFERENCE_KEYS = ("px_scale", "px_r", "px_rate", "px_dropout", "qz_m", "qz_v", "z", "ql_m", "ql_v", "library")


def _select_per_cell(table: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
    """Rows of ``table.T`` (shape ``(n_genes, n_cat)``) for each cell's category.

    ``cat`` holds indices ``(n, 1)`` or, in the semi-supervised models, one-hot rows ``(n, n_cat)``.
    Returns shape ``(n, n_genes)``.
    """
    n_cat = table.size(1)
    if cat.dim() == 2 and cat.size(1) == n_cat and n_cat > 1 and cat.is_floating_point():
        return F.linear(cat, table)
    return table.t()[cat.reshape(-1).long()]


class VAE(nn.Module):
    """Variational auto-encoder model of scVI [Lopez18]_.

    Parameters
    ----------
    n_input
        Number of input genes.
    n_batch
        Number of batches; 0 or 1 means no batch correction.
    n_labels
        Number of labels.
    n_hidden
        Number of nodes per hidden layer.
    n_latent
        Dimensionality of the latent space.
    n_layers
        Number of hidden layers of the encoder and decoder networks.
    dropout_rate
        Dropout rate of the encoders.
    dispersion
        ``'gene'`` (one inverse dispersion per gene), ``'gene-batch'`` (per gene and batch),
        ``'gene-label'`` (per gene and label) or ``'gene-cell'`` (decoded for every gene in every cell).
    log_variational
        Encode ``log(1 + x)`` instead of ``x`` (numerical stability, not normalisation).
    reconstruction_loss
        ``'zinb'`` (zero-inflated negative binomial), ``'nb'`` (negative binomial) or ``'poisson'``.
    latent_distribution
        ``'normal'`` or ``'ln'`` (logistic normal).

    Raises
    ------
    ValueError
        For an unknown option string, or a per-batch / per-label dispersion without batches / labels.

    Examples
    --------
    >>> gene_dataset = CortexDataset()
    >>> vae = VAE(gene_dataset.nb_genes, n_batch=gene_dataset.n_batches * False,
    ... n_labels=gene_dataset.n_labels)
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        dispersion: str = "gene",
        log_variational: bool = True,
        reconstruction_loss: str = "zinb",
        latent_distribution: str = "normal",
    ):
        super().__init__()
        check_option("dispersion", dispersion, DISPERSIONS)
        check_option("reconstruction_loss", reconstruction_loss, RECONSTRUCTION_LOSSES)
        check_option("latent_distribution", latent_distribution, LATENT_DISTRIBUTIONS)
        check_dispersion_covariates(dispersion, n_batch, n_labels)
        self.dispersion = dispersion
        self.n_latent = n_latent
        self.log_variational = log_variational
        self.reconstruction_loss = reconstruction_loss
        self.n_batch = n_batch
        self.n_labels = n_labels
        self.latent_distribution = latent_distribution

        # log inverse dispersion; 'gene-cell' decodes it
        px_r = dispersion_parameter(dispersion, n_input, n_batch, n_labels)
        if px_r is not None:
            self.px_r = px_r

        self.z_encoder = Encoder(
            n_input,
            n_latent,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            distribution=latent_distribution,
        )
        self.l_encoder = Encoder(n_input, 1, n_layers=1, n_hidden=n_hidden, dropout_rate=dropout_rate)
        self.decoder = DecoderSCVI(n_latent, n_input, n_cat_list=[n_batch], n_layers=n_layers, n_hidden=n_hidden)

    # ---------------------------------------------------------------- inference (encoders)
    def _encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x) if self.log_variational else x

    def _encode(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, n_samples: int = 1) -> Dict[str, torch.Tensor]:
        """``x -> q(z | x), q(l | x)`` and draws of ``z`` (before and after the transformation) and ``l``."""
        x_ = self._encoder_input(x)
        qz_m, qz_v, untran_z = self.z_encoder.encode(x_, y)
        ql_m, ql_v, library = self.l_encoder.encode(x_)
        if n_samples > 1:
            qz_m = qz_m.unsqueeze(0).expand(n_samples, -1, -1)
            qz_v = qz_v.unsqueeze(0).expand(n_samples, -1, -1)
            untran_z = qz_m + qz_v.sqrt() * torch.randn_like(qz_m)
            ql_m = ql_m.unsqueeze(0).expand(n_samples, -1, -1)
            ql_v = ql_v.unsqueeze(0).expand(n_samples, -1, -1)
            library = ql_m + ql_v.sqrt() * torch.randn_like(ql_m)
        z = self.z_encoder.z_transformation(untran_z)
        return dict(qz_m=qz_m, qz_v=qz_v, untran_z=untran_z, z=z, ql_m=ql_m, ql_v=ql_v, library=library)

    # ---------------------------------------------------------------- generative model (decoder)
    def _dispersion(self, px_r: Optional[torch.Tensor], batch_index, y) -> torch.Tensor:
        """Inverse dispersion ``theta`` for the configured ``dispersion`` (exp of the log parameter)."""
        if self.dispersion == "gene-cell":
            return torch.exp(px_r)
        if self.dispersion == "gene":
            return torch.exp(self.px_r)
        if self.dispersion == "gene-batch":
            if batch_index is None:
                raise ValueError("dispersion='gene-batch' needs `batch_index`")
            return _select_per_cell(torch.exp(self.px_r), batch_index)
        if y is None:
            raise ValueError("dispersion='gene-label' needs labels `y`")
        return _select_per_cell(torch.exp(self.px_r), y)

    def _decode(self, z: torch.Tensor, library: torch.Tensor, batch_index=None, y=None) -> Dict[str, torch.Tensor]:
        """``z, l -> `` parameters of ``p(x | z, l)``: ``px_scale, px_r (theta), px_rate, px_dropout``."""
        px_scale, px_r, px_rate, px_dropout = self.decoder(self.dispersion, z, library, batch_index, y)
        px_r = self._dispersion(px_r, batch_index, y)
        return dict(px_scale=px_scale, px_r=px_r, px_rate=px_rate, px_dropout=px_dropout)

    def _transformed_batch(self, x: torch.Tensor, batch_index, transform_batch: Optional[int]):
        if transform_batch is None:
            return batch_index
        transform_batch = int(transform_batch)
        if self.n_batch > 1 and not 0 <= transform_batch < self.n_batch:
            raise ValueError(f"`transform_batch` must be in [0, {self.n_batch}); got {transform_batch}")
        if batch_index is None:
            return torch.full((x.size(0), 1), transform_batch, dtype=torch.long, device=x.device)
        return torch.full_like(batch_index, transform_batch)

    def _inference(
        self, x: torch.Tensor, batch_index=None, y=None, n_samples: int = 1, transform_batch: Optional[int] = None
    ) -> Dict[str, torch.Tensor]:
        """:meth:`inference` plus ``untran_z``, the latent draw before the transformation."""
        outputs = self._encode(x, y, n_samples=n_samples)
        dec_batch_index = self._transformed_batch(x, batch_index, transform_batch)
        outputs.update(self._decode(outputs["z"], outputs["library"], dec_batch_index, y))
        return outputs

    def inference(
        self, x: torch.Tensor, batch_index=None, y=None, n_samples: int = 1, transform_batch: Optional[int] = None
    ) -> Dict[str, torch.Tensor]:
        """Encode ``x``, draw the latent variables and decode them.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        batch_index
            Batch of each cell, shape ``(n, 1)``.
        y
            Label of each cell, shape ``(n, 1)``.
        n_samples
            Number of posterior draws; above one, every output gets a leading ``n_samples`` axis.
        transform_batch
            Decode every cell as if it came from this batch.

        Returns
        -------
        dict
            ``px_scale``, ``px_r`` (inverse dispersion), ``px_rate``, ``px_dropout`` (shape
            ``(..., n, n_input)``; ``px_r`` is ``(n_input,)`` for the ``'gene'`` dispersion),
            ``qz_m``, ``qz_v``, ``z`` (``(..., n, n_latent)``), ``ql_m``, ``ql_v``, ``library``
            (``(..., n, 1)``).
        """
        outputs = self._inference(x, batch_index, y, n_samples=n_samples, transform_batch=transform_batch)
        return {key: outputs[key] for key in _LEGACY_INFERENCE_KEYS}

    # ---------------------------------------------------------------- loss
    def get_reconstruction_loss(self, x, px_rate, px_r, px_dropout, **kwargs) -> torch.Tensor:
        """Per-cell reconstruction loss ``-log p(x | z, l)``.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        px_rate, px_r, px_dropout
            Mean, inverse dispersion and zero-inflation logits (see :meth:`inference`).
        **kwargs
            Ignored (subclasses take extra parameters).

        Returns
        -------
        torch.Tensor
            Shape ``(..., n)``.
        """
        likelihood = LIKELIHOODS[self.reconstruction_loss](px_rate, px_r, px_dropout)
        return -likelihood.log_prob(x).sum(dim=-1)

    def forward(self, x, local_l_mean, local_l_var, batch_index=None, y=None) -> LossOutput:
        """Reconstruction loss and KL divergences of a minibatch.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        local_l_mean, local_l_var
            Mean and variance of the log-library-size prior, shape ``(n, 1)``.
        batch_index
            Batch of each cell, shape ``(n, 1)``.
        y
            Label of each cell, shape ``(n, 1)``.

        Returns
        -------
        LossOutput
            ``(reconst_loss, kl_local, kl_global)``: as in scVI 0.6, ``reconst_loss`` (shape
            ``(n,)``) includes the library-size KL term (not annealed by the trainer),
            ``kl_local`` is ``KL(q(z|x) || N(0, I))`` (shape ``(n,)``) and ``kl_global`` is ``0.0``.
        """
        fused = fused_step.vae_training_loss(self, x, local_l_mean, local_l_var, batch_index)
        if fused is not None:
            return LossOutput(fused[0], fused[1], 0.0)
        if self._fused_loss_applies():
            outputs = self._encode(x, y)
            reconst_loss = self._fused_reconstruction_loss(x, outputs["z"], outputs["library"], batch_index, y)
        else:
            outputs = self._inference(x, batch_index, y)
            reconst_loss = self.get_reconstruction_loss(x, outputs["px_rate"], outputs["px_r"], outputs["px_dropout"])
        kl_divergence_z = kl_normal(outputs["qz_m"], outputs["qz_v"]).sum(dim=1)
        kl_divergence_l = kl_normal(outputs["ql_m"], outputs["ql_v"], local_l_mean, local_l_var).sum(dim=1)
        return LossOutput(reconst_loss + kl_divergence_l, kl_divergence_z, 0.0)

    # The default decoder, likelihood and dispersion on the CPU: the training loss goes from the
    # decoder's hidden layer to the per-cell loss in one autograd step (the last layers' products,
    # then one kernel call for their biases, the softmax, library size, NB / ZINB and their
    # gradients): about 5% off a training step against the same operations in torch (and a few
    # fewer full-size passes than the kernel behind torch's linear layers).
    _FUSED_LOSS_PATH = ("inference", "_inference", "_decode", "_dispersion", "get_reconstruction_loss")

    def _fused_loss_applies(self) -> bool:
        """Whether :meth:`forward` may take the fused path: the kernel is built, the model decodes
        with :class:`DecoderSCVI` into an NB / ZINB with one dispersion per gene, and no subclass
        overrides a method of the usual path (which would then be bypassed)."""
        if not fused_likelihood.ENABLED or type(self.decoder) is not DecoderSCVI:
            return False
        if self.reconstruction_loss not in ("zinb", "nb") or self.dispersion != "gene":
            return False
        cls = type(self)
        return all(getattr(cls, name) is getattr(VAE, name) for name in self._FUSED_LOSS_PATH)

    def _fused_reconstruction_loss(self, x, z, library, batch_index, y) -> torch.Tensor:
        """:meth:`get_reconstruction_loss` of the decoded ``z``: from the decoder's hidden layers
        through the kernel, or (counts it does not take, another device) from the decoder's
        outputs as in :meth:`_decode`."""
        decoder = self.decoder
        hidden = decoder.px_decoder(z, batch_index, y)
        theta = self._dispersion(None, batch_index, y)
        dropout_layer = decoder.px_dropout_decoder if self.reconstruction_loss == "zinb" else None
        log_likelihood = fused_likelihood.fused_nb_family_from_hidden(
            x, hidden, decoder.px_scale_decoder[0], dropout_layer, library, theta, LOG_EPS
        )
        if log_likelihood is not None:
            return -log_likelihood
        px_scale_logits, _, px_dropout = decoder.logits_from_hidden(self.dispersion, hidden)
        _, px_rate = decoder.scale_and_rate(px_scale_logits, library)
        return self.get_reconstruction_loss(x, px_rate, theta, px_dropout)

    # ---------------------------------------------------------------- legacy accessors
    def get_latents(self, x, y=None) -> List[torch.Tensor]:
        """``[sample_from_posterior_z(x, y)]`` (a one-element list)."""
        return [self.sample_from_posterior_z(x, y)]

    def sample_from_posterior_z(self, x, y=None, give_mean: bool = False, n_samples: int = 5000) -> torch.Tensor:
        """Draw the latent variables from ``q(z | x)``, or return its mean.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        y
            Labels, shape ``(n, 1)`` (used by the semi-supervised models).
        give_mean
            Return the posterior mean instead of a draw (for ``'ln'``, a Monte Carlo average of
            ``n_samples`` transformed draws).
        n_samples
            Number of draws of that Monte Carlo average.

        Returns
        -------
        torch.Tensor
            Shape ``(n, n_latent)``.
        """
        qz_m, qz_v, untran_z = self.z_encoder.encode(self._encoder_input(x), y)
        if not give_mean:
            return self.z_encoder.z_transformation(untran_z)
        if self.latent_distribution == "ln":
            samples = qz_m + qz_v.sqrt() * torch.randn((n_samples,) + qz_m.shape, device=qz_m.device)
            return self.z_encoder.z_transformation(samples).mean(dim=0)
        return qz_m

    def sample_from_posterior_l(self, x) -> torch.Tensor:
        """Draw the log library size from ``q(l | x)``, shape ``(n, 1)``."""
        return self.l_encoder(self._encoder_input(x))[2]

    def get_sample_scale(self, x, batch_index=None, y=None, n_samples=1, transform_batch=None) -> torch.Tensor:
        """Normalised expression ``px_scale`` (rows sum to one), shape ``([n_samples,] n, n_input)``."""
        return self.inference(x, batch_index=batch_index, y=y, n_samples=n_samples, transform_batch=transform_batch)[
            "px_scale"
        ]

    def get_sample_rate(self, x, batch_index=None, y=None, n_samples=1, transform_batch=None) -> torch.Tensor:
        """Mean of the count distribution ``px_rate``, shape ``([n_samples,] n, n_input)``."""
        return self.inference(x, batch_index=batch_index, y=y, n_samples=n_samples, transform_batch=transform_batch)[
            "px_rate"
        ]


class LDVAE(VAE):
    """Linearly decoded variational auto-encoder [Svensson20]_.

    The encoder is a neural network; the decoder maps the latent space linearly to the gene
    expression (through a softmax), so that :meth:`get_loadings` tells which genes drive each
    latent dimension.

    Parameters
    ----------
    n_input, n_batch, n_labels, n_hidden, n_latent, dropout_rate, dispersion, log_variational,
    latent_distribution
        As in :class:`VAE`.
    n_layers_encoder
        Number of hidden layers of the encoder.
    reconstruction_loss
        ``'nb'`` (default), ``'zinb'`` or ``'poisson'``.
    use_batch_norm
        Batch norm in the linear decoder.
    bias
        Biases in the linear decoder.
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers_encoder: int = 1,
        dropout_rate: float = 0.1,
        dispersion: str = "gene",
        log_variational: bool = True,
        reconstruction_loss: str = "nb",
        use_batch_norm: bool = True,
        bias: bool = False,
        latent_distribution: str = "normal",
    ):
        if dispersion == "gene-cell":
            raise ValueError(
                "LDVAE does not decode a dispersion: `dispersion` must be 'gene', 'gene-batch' or 'gene-label'"
            )
        super().__init__(
            n_input,
            n_batch,
            n_labels,
            n_hidden,
            n_latent,
            n_layers_encoder,
            dropout_rate,
            dispersion,
            log_variational,
            reconstruction_loss,
            latent_distribution,
        )
        self.use_batch_norm = use_batch_norm
        self.decoder = LinearDecoderSCVI(
            n_latent, n_input, n_cat_list=[n_batch], use_batch_norm=use_batch_norm, bias=bias
        )

    @torch.no_grad()
    def get_loadings(self) -> np.ndarray:
        """Per-gene weights of each latent dimension in the linear decoder.

        With batch norm, the weights are rescaled by ``gamma / sqrt(running_var + eps)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_input, n_latent)``.
        """
        linear = self.decoder.factor_regressor.fc_layers[0][0]
        loadings = linear.weight
        if self.use_batch_norm:
            bn = self.decoder.factor_regressor.fc_layers[0][1]
            loadings = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).unsqueeze(1) * loadings
        loadings = loadings.detach().cpu().numpy()
        if self.n_batch > 1:
            loadings = loadings[:, : -self.n_batch]
        return loadings
