"""Network building blocks: fully-connected stacks with covariate injection, encoders and decoders.

The module tree (and so the ``state_dict`` keys) is the one of scVI 0.6, e.g.
``fc_layers["Layer 0"] = Sequential(Linear, BatchNorm1d, ReLU, Dropout)``, so that weights saved by
the original package load unchanged.
"""
import collections
import logging
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from scvi._compiled import kernels
from scvi._utils import LastTensorResult

from ._base import LATENT_DISTRIBUTIONS, check_option
from ._base import reparameterize_gaussian as _reparameterize
from ._sparse_input import sparse_input_linear
from .utils import one_hot

logger = logging.getLogger(__name__)

__all__ = [
    "FCLayers",
    "Encoder",
    "Decoder",
    "DecoderSCVI",
    "LinearDecoderSCVI",
    "MultiEncoder",
    "MultiDecoder",
    "identity",
    "reparameterize_gaussian",
    "one_hot",
]


def reparameterize_gaussian(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Differentiable draw from ``N(mu, var)`` (``var`` is a variance), same shape as ``mu``."""
    return _reparameterize(mu, var)


class Linear(nn.Linear):
    """:class:`torch.nn.Linear` that skips the zeros of a mostly-zero input on the CPU.

    An encoder's first layer reads the (log) counts; for float32 inputs that need no gradient
    and are at most a quarter non-zero, the product sums rows of the weights over the non-zeros
    (:mod:`scvi.models._sparse_input`). Same parameters, ``state_dict`` and results (up to float32
    rounding) as ``nn.Linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = sparse_input_linear(x, self.weight, self.bias)
        return super().forward(x) if out is None else out


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with a cheaper random mask on the CPU.

    ``torch.nn.Dropout`` draws one Bernoulli variable per element from the Mersenne twister,
    which costs more than the layer it follows (for totalVI's 256-wide layers, about a seventh
    of a training step). Here each element gets a 16-bit uniform: from the compiled kernels
    (:mod:`scvi._compiled`: counter-based, seeded by one draw of torch's generator) for float32,
    else four per 64-bit draw of torch's generator; seeded runs stay reproducible either way.
    The drop probability is ``p`` rounded to a multiple of ``2**-16`` and the kept values are
    rescaled by the exact keep probability, as in ``nn.Dropout``. Other devices use
    ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or not x.is_floating_point():
            return super().forward(x)
        if self.p == 1:
            return x * 0.0
        if kernels is not None and x.dtype == torch.float32:
            mask = self.float32_mask(x.shape)
        else:
            n_dropped, scale = self._drop_counts()
            mask = self._torch_mask(x, n_dropped, scale)
        if self.inplace:
            return x.mul_(mask)
        return x * mask

    def _drop_counts(self) -> Tuple[int, float]:
        """``(n_dropped, scale)``: elements whose 16-bit uniform is below ``n_dropped`` are dropped,
        the others multiplied by ``scale``."""
        n_dropped = min(max(int(round(self.p * 65536)), 1), 65535)
        return n_dropped, 65536 / (65536 - n_dropped)

    def float32_mask(self, shape: Sequence[int]) -> torch.Tensor:
        """The float32 CPU mask of :meth:`forward` for an input of this shape, from the compiled
        kernels (one draw of torch's generator); ``0 < p < 1``."""
        n_dropped, scale = self._drop_counts()
        seed = int(torch.empty((), dtype=torch.int64).random_())
        mask = torch.empty(tuple(shape), dtype=torch.float32)
        kernels.dropout_mask(seed, mask.data_ptr(), mask.numel(), n_dropped, scale)
        return mask

    @staticmethod
    def _torch_mask(x: torch.Tensor, n_dropped: int, scale: float) -> torch.Tensor:
        """The mask from four 16-bit uniforms per 64-bit word of torch's generator."""
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        uniform16 = words.view(torch.int16)[: x.numel()].view(x.shape)
        kept = uniform16 >= n_dropped - 32768
        if x.dtype == torch.get_default_dtype():
            # one pass instead of a cast and a product; `where` on Python scalars gives the default
            # dtype, so other dtypes cast (a float32 `scale` would round a float64 mask)
            return torch.where(kept, scale, 0.0)
        return kept.to(x.dtype).mul_(scale)


def identity(x):
    """Return ``x`` unchanged (the latent transformation of the ``'normal'`` distribution)."""
    return x


# A model's encoders and decoders one-hot encode the same covariate (the minibatch's batch
# indices) at every layer: the last encoding is reused for the same, unmodified index tensor in
# the same inference mode (an encoding made in inference mode cannot enter autograd). The encoding
# is never modified: it is only concatenated.
_last_encoding = LastTensorResult()


def _one_hot_of_minibatch(index: torch.Tensor, n_cat: int) -> torch.Tensor:
    return _last_encoding.get(index, (n_cat, torch.is_inference_mode_enabled()), lambda: one_hot(index, n_cat))


class FCLayers(nn.Module):
    """Fully-connected layers with optional batch norm, ReLU, dropout and one-hot covariates.

    Every linear layer receives the one-hot encodings of the categorical covariates concatenated
    to its input (covariates with fewer than two categories are ignored).

    Parameters
    ----------
    n_in
        Dimensionality of the input.
    n_out
        Dimensionality of the output.
    n_cat_list
        Number of categories of each categorical covariate.
    n_layers
        Number of linear layers (0 behaves as 1, as in scVI 0.6).
    n_hidden
        Width of the hidden layers.
    dropout_rate
        Dropout rate after each layer (no dropout module when 0).
    use_batch_norm
        Add ``BatchNorm1d(momentum=0.01, eps=0.001)`` after each linear layer.
    use_relu
        Add a ReLU after each layer.
    bias
        Learn biases in the linear layers.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_cat_list: Optional[Iterable[int]] = None,
        n_layers: int = 1,
        n_hidden: int = 128,
        dropout_rate: float = 0.1,
        use_batch_norm: bool = True,
        use_relu: bool = True,
        bias: bool = True,
    ):
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"`n_layers` must be non-negative; got {n_layers}")
        if not 0 <= dropout_rate < 1:
            raise ValueError(f"`dropout_rate` must be in [0, 1); got {dropout_rate}")
        layers_dim = [n_in] + (n_layers - 1) * [n_hidden] + [n_out]
        # A covariate with a single category carries no information: it is ignored.
        self.n_cat_list = [n_cat if n_cat > 1 else 0 for n_cat in n_cat_list] if n_cat_list is not None else []
        n_cov = sum(self.n_cat_list)
        self.fc_layers = nn.Sequential(
            collections.OrderedDict(
                (
                    f"Layer {i}",
                    nn.Sequential(
                        Linear(d_in + n_cov, d_out, bias=bias),
                        # momentum / eps of the original TensorFlow implementation
                        nn.BatchNorm1d(d_out, momentum=0.01, eps=0.001) if use_batch_norm else None,
                        nn.ReLU() if use_relu else None,
                        Dropout(p=dropout_rate) if dropout_rate > 0 else None,
                    ),
                )
                for i, (d_in, d_out) in enumerate(zip(layers_dim[:-1], layers_dim[1:]))
            )
        )

    def _covariates(self, cat_list: Sequence) -> List[torch.Tensor]:
        if len(self.n_cat_list) > len(cat_list):
            raise ValueError(
                f"FCLayers expects {len(self.n_cat_list)} categorical covariate(s); got {len(cat_list)}"
            )
        encoded = []
        for n_cat, cat in zip(self.n_cat_list, cat_list):
            if not n_cat:
                continue
            if cat is None:
                raise ValueError("a categorical covariate is None while its number of categories is > 1")
            # Already one-hot encoded (e.g. enumerated labels of the semi-supervised models).
            encoded.append(cat if cat.dim() == 2 and cat.size(1) == n_cat else _one_hot_of_minibatch(cat, n_cat))
        return encoded

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor, instance_id: int = 0) -> torch.Tensor:
        """Apply the layers.

        Parameters
        ----------
        x
            Input, shape ``(n, n_in)`` or ``(n_samples, n, n_in)``.
        *cat_list
            One tensor of category indices ``(n, 1)`` (or one-hot ``(n, n_cat)``) per covariate.
        instance_id
            Unused (kept for compatibility with scVI 0.6).

        Returns
        -------
        torch.Tensor
            Shape ``(n, n_out)`` or ``(n_samples, n, n_out)``.
        """
        covariates = self._covariates(cat_list)
        if covariates and x.dim() == 3:
            covariates = [c.unsqueeze(0).expand(x.size(0), -1, -1) for c in covariates]
        for layers in self.fc_layers:
            for layer in layers:
                if layer is None:
                    continue
                if isinstance(layer, nn.Linear):
                    if covariates:
                        x = torch.cat((x, *covariates), dim=-1)
                    x = layer(x)
                elif isinstance(layer, nn.BatchNorm1d) and x.dim() == 3:
                    x = self._batch_norm_3d(layer, x)
                else:
                    x = layer(x)
        return x

    @staticmethod
    def _batch_norm_3d(layer: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        if layer.training:
            # as scVI 0.6: statistics of each sample slice separately
            return torch.stack([layer(slice_x) for slice_x in x], dim=0)
        return layer(x.reshape(-1, x.size(-1))).view(x.shape)


def _hidden_layers(n_in, n_hidden, n_cat_list, n_layers, dropout_rate) -> "FCLayers":
    """The usual hidden stack: :class:`FCLayers` from ``n_in`` to ``n_hidden`` (ReLU, batch norm)."""
    return FCLayers(
        n_in=n_in,
        n_out=n_hidden,
        n_cat_list=n_cat_list,
        n_layers=n_layers,
        n_hidden=n_hidden,
        dropout_rate=dropout_rate,
    )


class Encoder(nn.Module):
    """Encode data into the parameters of a Gaussian latent variable and draw from it.

    Parameters
    ----------
    n_input
        Dimensionality of the input (data space).
    n_output
        Dimensionality of the output (latent space).
    n_cat_list
        Number of categories of each categorical covariate.
    n_layers
        Number of hidden layers.
    n_hidden
        Width of the hidden layers.
    dropout_rate
        Dropout rate of the hidden layers.
    distribution
        ``'normal'`` (the latent is the Gaussian draw) or ``'ln'`` (logistic normal: softmax of
        the Gaussian draw).
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Optional[Iterable[int]] = None,
        n_layers: int = 1,
        n_hidden: int = 128,
        dropout_rate: float = 0.1,
        distribution: str = "normal",
    ):
        super().__init__()
        check_option("distribution", distribution, LATENT_DISTRIBUTIONS)
        self.distribution = distribution
        self.encoder = _hidden_layers(n_input, n_hidden, n_cat_list, n_layers, dropout_rate)
        self.mean_encoder = nn.Linear(n_hidden, n_output)
        self.var_encoder = nn.Linear(n_hidden, n_output)
        self.z_transformation = nn.Softmax(dim=-1) if distribution == "ln" else identity

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode ``x``.

        Parameters
        ----------
        x
            Input, shape ``(n, n_input)``.
        *cat_list
            Categorical covariates (see :class:`FCLayers`).

        Returns
        -------
        tuple
            ``(q_m, q_v, latent)``, each of shape ``(n, n_output)``: mean, variance
            (``exp(.) + 1e-4``) and a reparameterised (transformed) draw.
        """
        q_m, q_v, untran = self.encode(x, *cat_list)
        return q_m, q_v, self.z_transformation(untran)

    def encode(self, x: torch.Tensor, *cat_list: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`forward` but the draw is returned before the latent transformation."""
        q = self.encoder(x, *cat_list)
        q_m = self.mean_encoder(q)
        q_v = torch.exp(self.var_encoder(q)) + 1e-4
        return q_m, q_v, _reparameterize(q_m, q_v)


class DecoderSCVI(nn.Module):
    """Decode latent variables into the parameters of scVI's count distribution.

    Parameters
    ----------
    n_input
        Dimensionality of the input (latent space).
    n_output
        Dimensionality of the output (number of genes).
    n_cat_list
        Number of categories of each categorical covariate.
    n_layers
        Number of hidden layers.
    n_hidden
        Width of the hidden layers.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Optional[Iterable[int]] = None,
        n_layers: int = 1,
        n_hidden: int = 128,
    ):
        super().__init__()
        self.px_decoder = _hidden_layers(n_input, n_hidden, n_cat_list, n_layers, dropout_rate=0)
        self.px_scale_decoder = nn.Sequential(nn.Linear(n_hidden, n_output), nn.Softmax(dim=-1))
        # only used for the gene-cell dispersion
        self.px_r_decoder = nn.Linear(n_hidden, n_output)
        self.px_dropout_decoder = nn.Linear(n_hidden, n_output)

    def forward(self, dispersion: str, z: torch.Tensor, library: torch.Tensor, *cat_list: torch.Tensor):
        """Decode.

        Parameters
        ----------
        dispersion
            ``'gene-cell'`` also decodes the (log) inverse dispersion; otherwise ``px_r`` is ``None``.
        z
            Latent variables, shape ``(n, n_input)`` or ``(n_samples, n, n_input)``.
        library
            Log library size, shape ``(n, 1)`` (or ``(n_samples, n, 1)``).
        *cat_list
            Categorical covariates (see :class:`FCLayers`).

        Returns
        -------
        tuple
            ``(px_scale, px_r, px_rate, px_dropout)``: normalised expression (rows sum to one),
            log inverse dispersion or ``None``, mean ``exp(library) * px_scale`` and
            zero-inflation logits, each of shape ``(..., n_output)``.
        """
        px_scale_logits, px_r, px_dropout = self.decode_logits(dispersion, z, *cat_list)
        px_scale, px_rate = self.scale_and_rate(px_scale_logits, library)
        return px_scale, px_r, px_rate, px_dropout

    def decode_logits(
        self, dispersion: str, z: torch.Tensor, *cat_list: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """:meth:`forward` up to the softmax.

        The training loss of :class:`~scvi.models.VAE` goes from ``px_decoder``'s output to a
        fused kernel that applies the last layers' biases, the softmax and the library size
        itself (:meth:`logits_from_hidden` and :meth:`scale_and_rate` otherwise).

        Parameters
        ----------
        dispersion, z, *cat_list
            As in :meth:`forward`.

        Returns
        -------
        tuple
            ``(px_scale_logits, px_r, px_dropout)``: logits of the normalised expression, log
            inverse dispersion (``'gene-cell'``) or ``None``, and zero-inflation logits, each of
            shape ``(..., n_output)``.
        """
        return self.logits_from_hidden(dispersion, self.px_decoder(z, *cat_list))

    def logits_from_hidden(
        self, dispersion: str, px: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """:meth:`decode_logits` from the output of the hidden layers ``px_decoder``.

        Parameters
        ----------
        dispersion
            As in :meth:`forward`.
        px
            Output of ``px_decoder``, shape ``(..., n_hidden)``.

        Returns
        -------
        tuple
            As :meth:`decode_logits`.
        """
        px_scale_logits = self.px_scale_decoder[0](px)
        px_dropout = self.px_dropout_decoder(px)
        px_r = self.px_r_decoder(px) if dispersion == "gene-cell" else None
        return px_scale_logits, px_r, px_dropout

    def scale_and_rate(self, px_scale_logits: torch.Tensor, library: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The rest of :meth:`forward`: normalised expression and mean.

        Parameters
        ----------
        px_scale_logits
            From :meth:`decode_logits`, shape ``(..., n_output)``.
        library
            Log library size, shape ``(..., 1)``.

        Returns
        -------
        tuple
            ``(px_scale, px_rate)``: ``softmax(px_scale_logits)`` (rows sum to one) and
            ``exp(library) * px_scale``, each of shape ``(..., n_output)``.
        """
        px_scale = self.px_scale_decoder[1](px_scale_logits)
        return px_scale, torch.exp(library) * px_scale


class LinearDecoderSCVI(nn.Module):
    """Linear decoder of LDVAE: ``softmax(W z)`` (with optional batch norm), interpretable loadings.

    Parameters
    ----------
    n_input
        Dimensionality of the latent space.
    n_output
        Number of genes.
    n_cat_list
        Number of categories of each categorical covariate.
    use_batch_norm
        Batch norm after the linear maps.
    bias
        Learn biases.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Optional[Iterable[int]] = None,
        use_batch_norm: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        kwargs = dict(
            n_in=n_input,
            n_out=n_output,
            n_cat_list=n_cat_list,
            n_layers=1,
            use_relu=False,
            use_batch_norm=use_batch_norm,
            bias=bias,
            dropout_rate=0,
        )
        self.factor_regressor = FCLayers(**kwargs)
        self.px_dropout_decoder = FCLayers(**kwargs)

    def forward(self, dispersion: str, z: torch.Tensor, library: torch.Tensor, *cat_list: torch.Tensor):
        """Decode; same signature and return value as :meth:`DecoderSCVI.forward` (``px_r`` is ``None``)."""
        px_scale = torch.softmax(self.factor_regressor(z, *cat_list), dim=-1)
        px_dropout = self.px_dropout_decoder(z, *cat_list)
        px_rate = torch.exp(library) * px_scale
        return px_scale, None, px_rate, px_dropout


class Decoder(nn.Module):
    """Decode into the mean and variance of a Gaussian.

    Parameters
    ----------
    n_input
        Dimensionality of the input (latent space).
    n_output
        Dimensionality of the output.
    n_cat_list
        Number of categories of each categorical covariate.
    n_layers
        Number of hidden layers.
    n_hidden
        Width of the hidden layers.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Optional[Iterable[int]] = None,
        n_layers: int = 1,
        n_hidden: int = 128,
    ):
        super().__init__()
        self.decoder = _hidden_layers(n_input, n_hidden, n_cat_list, n_layers, dropout_rate=0)
        self.mean_decoder = nn.Linear(n_hidden, n_output)
        self.var_decoder = nn.Linear(n_hidden, n_output)

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(p_m, p_v)``, mean and variance, each of shape ``(n, n_output)``."""
        p = self.decoder(x, *cat_list)
        return self.mean_decoder(p), torch.exp(self.var_decoder(p))


class MultiEncoder(nn.Module):
    """Encoder with one input head per dataset and shared upper layers (used by JVAE).

    Parameters
    ----------
    n_heads
        Number of input heads.
    n_input_list
        Input dimensionality of each head.
    n_output
        Dimensionality of the latent space.
    n_hidden
        Width of the hidden layers.
    n_layers_individual
        Number of layers of each head.
    n_layers_shared
        Number of shared layers.
    n_cat_list
        Number of categories of each categorical covariate.
    dropout_rate
        Dropout rate.
    """

    def __init__(
        self,
        n_heads: int,
        n_input_list: List[int],
        n_output: int,
        n_hidden: int = 128,
        n_layers_individual: int = 1,
        n_layers_shared: int = 2,
        n_cat_list: Optional[Iterable[int]] = None,
        dropout_rate: float = 0.1,
    ):
        super().__init__()
        if len(n_input_list) != n_heads:
            raise ValueError(f"`n_input_list` must have `n_heads`={n_heads} entries; got {len(n_input_list)}")
        self.encoders = nn.ModuleList(
            _hidden_layers(n_input_list[i], n_hidden, n_cat_list, n_layers_individual, dropout_rate)
            for i in range(n_heads)
        )
        self.encoder_shared = _hidden_layers(n_hidden, n_hidden, n_cat_list, n_layers_shared, dropout_rate)
        self.mean_encoder = nn.Linear(n_hidden, n_output)
        self.var_encoder = nn.Linear(n_hidden, n_output)

    def forward(self, x: torch.Tensor, head_id: int, *cat_list: torch.Tensor):
        """Encode ``x`` with head ``head_id``; returns ``(q_m, q_v, latent)`` of shape ``(n, n_output)``."""
        q = self.encoders[head_id](x, *cat_list)
        q = self.encoder_shared(q, *cat_list)
        q_m = self.mean_encoder(q)
        q_v = torch.exp(self.var_encoder(q))
        return q_m, q_v, _reparameterize(q_m, q_v)


class MultiDecoder(nn.Module):
    """Decoder with covariate-conditioned lower layers and shared upper layers (used by JVAE).

    Parameters
    ----------
    n_input
        Dimensionality of the latent space.
    n_output
        Number of genes.
    n_hidden_conditioned
        Width of the conditioned layers.
    n_hidden_shared
        Width of the shared layers.
    n_layers_conditioned
        Number of conditioned layers (0 for none).
    n_layers_shared
        Number of shared layers (0 for none).
    n_cat_list
        Number of categories of each categorical covariate.
    dropout_rate
        Dropout rate.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_hidden_conditioned: int = 32,
        n_hidden_shared: int = 128,
        n_layers_conditioned: int = 1,
        n_layers_shared: int = 1,
        n_cat_list: Optional[Iterable[int]] = None,
        dropout_rate: float = 0.2,
    ):
        super().__init__()
        n_out = n_hidden_conditioned if n_layers_shared else n_hidden_shared
        if n_layers_conditioned:
            self.px_decoder_conditioned = FCLayers(
                n_in=n_input,
                n_out=n_out,
                n_cat_list=n_cat_list,
                n_layers=n_layers_conditioned,
                n_hidden=n_hidden_conditioned,
                dropout_rate=dropout_rate,
                use_batch_norm=True,
            )
            n_in = n_out
        else:
            self.px_decoder_conditioned = None
            n_in = n_input
        if n_layers_shared:
            self.px_decoder_final = FCLayers(
                n_in=n_in,
                n_out=n_hidden_shared,
                n_cat_list=[],
                n_layers=n_layers_shared,
                n_hidden=n_hidden_shared,
                dropout_rate=dropout_rate,
                use_batch_norm=True,
            )
            n_in = n_hidden_shared
        else:
            self.px_decoder_final = None
        self.px_scale_decoder = nn.Sequential(nn.Linear(n_in, n_output), nn.Softmax(dim=-1))
        self.px_r_decoder = nn.Linear(n_in, n_output)
        self.px_dropout_decoder = nn.Linear(n_in, n_output)

    def forward(self, z: torch.Tensor, dataset_id: int, library: torch.Tensor, dispersion: str, *cat_list):
        """Decode; returns ``(px_scale, px_r, px_rate, px_dropout)`` as :meth:`DecoderSCVI.forward`."""
        px = z
        if self.px_decoder_conditioned is not None:
            px = self.px_decoder_conditioned(px, *cat_list, instance_id=dataset_id)
        if self.px_decoder_final is not None:
            px = self.px_decoder_final(px, *cat_list)
        px_scale = self.px_scale_decoder(px)
        px_dropout = self.px_dropout_decoder(px)
        px_rate = torch.exp(library) * px_scale
        px_r = self.px_r_decoder(px) if dispersion == "gene-cell" else None
        return px_scale, px_r, px_rate, px_dropout


# --- totalVI ---
__all__ += ["DecoderTOTALVI", "EncoderTOTALVI"]


class DecoderTOTALVI(nn.Module):
    """Decode the latent space into the gene and protein likelihood parameters of totalVI.

    Four branches (each an :class:`FCLayers` of ``n_layers`` hidden layers on ``z`` and the
    covariates, then a linear head on ``[hidden, z]``) give the gene scales, the posterior of the
    log protein background mean, the foreground scaling factor (``>= 1``) and the mixing logits
    (gene dropout and protein background probability).

    Parameters
    ----------
    n_input
        Dimensionality of the latent space.
    n_output_genes
        Number of genes.
    n_output_proteins
        Number of proteins.
    n_cat_list
        Number of categories of each categorical covariate (one-hot encoded).
    n_layers
        Hidden layers of each branch.
    n_hidden
        Nodes per hidden layer.
    dropout_rate
        Dropout rate of the hidden layers.
    """

    def __init__(
        self,
        n_input: int,
        n_output_genes: int,
        n_output_proteins: int,
        n_cat_list: Iterable[int] = None,
        n_layers: int = 1,
        n_hidden: int = 256,
        dropout_rate: float = 0,
    ):
        super().__init__()
        self.n_output_genes = n_output_genes
        self.n_output_proteins = n_output_proteins

        def hidden():
            return _hidden_layers(n_input, n_hidden, n_cat_list, n_layers, dropout_rate)

        def head(n_out: int, use_relu: bool = False):
            return FCLayers(
                n_in=n_hidden + n_input,
                n_out=n_out,
                n_cat_list=n_cat_list,
                n_layers=1,
                use_relu=use_relu,
                use_batch_norm=False,
                dropout_rate=0,
            )

        self.px_decoder = hidden()
        self.px_scale_decoder = head(n_output_genes)
        self.py_back_decoder = hidden()
        self.py_back_mean_log_alpha = head(n_output_proteins)
        self.py_back_mean_log_beta = head(n_output_proteins)
        self.py_fore_decoder = hidden()
        self.py_fore_scale_decoder = head(n_output_proteins, use_relu=True)
        self.sigmoid_decoder = hidden()
        self.px_dropout_decoder_gene = head(n_output_genes)
        self.py_background_decoder = head(n_output_proteins)

    def forward(self, z: torch.Tensor, library_gene: torch.Tensor, *cat_list: int, gene_dropout: bool = True):
        """Decode ``z``.

        Parameters
        ----------
        z
            Latent values, ``(n_cells, n_input)`` (or ``(n_samples, n_cells, n_input)``).
        library_gene
            Library size, ``(n_cells, 1)``.
        cat_list
            Categorical covariates of the cells, each ``(n_cells, 1)``.
        gene_dropout
            Decode the zero-inflation logits of the genes (``px_["dropout"]`` is ``None`` otherwise;
            a negative-binomial model skips them while training).

        Returns
        -------
        tuple
            ``px_`` (dict: ``scale``, ``rate``, ``dropout`` of shape ``(n_cells, n_output_genes)``),
            ``py_`` (dict: ``back_alpha``, ``back_beta``, ``rate_back``, ``fore_scale``,
            ``rate_fore``, ``mixing``, ``scale`` of shape ``(n_cells, n_output_proteins)``) and the
            sampled log background mean ``(n_cells, n_output_proteins)``.
        """
        px_ = {}
        py_ = {}

        px_cat_z = torch.cat([self.px_decoder(z, *cat_list), z], dim=-1)
        px_["scale"] = torch.softmax(self.px_scale_decoder(px_cat_z, *cat_list), dim=-1)
        px_["rate"] = library_gene * px_["scale"]

        py_back_cat_z = torch.cat([self.py_back_decoder(z, *cat_list), z], dim=-1)
        py_["back_alpha"] = self.py_back_mean_log_alpha(py_back_cat_z, *cat_list)
        py_["back_beta"] = torch.exp(self.py_back_mean_log_beta(py_back_cat_z, *cat_list))
        log_pro_back_mean = py_["back_alpha"] + py_["back_beta"] * torch.randn_like(py_["back_beta"])
        py_["rate_back"] = torch.exp(log_pro_back_mean)

        py_fore_cat_z = torch.cat([self.py_fore_decoder(z, *cat_list), z], dim=-1)
        py_["fore_scale"] = self.py_fore_scale_decoder(py_fore_cat_z, *cat_list) + 1 + 1e-8
        py_["rate_fore"] = py_["rate_back"] * py_["fore_scale"]

        p_mixing_cat_z = torch.cat([self.sigmoid_decoder(z, *cat_list), z], dim=-1)
        px_["dropout"] = self.px_dropout_decoder_gene(p_mixing_cat_z, *cat_list) if gene_dropout else None
        py_["mixing"] = self.py_background_decoder(p_mixing_cat_z, *cat_list)

        protein_mixing = torch.sigmoid(py_["mixing"])
        py_["scale"] = nn.functional.normalize((1 - protein_mixing) * py_["rate_fore"], p=1, dim=-1)
        return px_, py_, log_pro_back_mean


class EncoderTOTALVI(nn.Module):
    """Encode genes and proteins into the latent space and the gene library size of totalVI.

    Parameters
    ----------
    n_input
        Dimensionality of the input (genes + proteins).
    n_output
        Dimensionality of the latent space.
    n_cat_list
        Number of categories of each categorical covariate (one-hot encoded).
    n_layers
        Hidden layers of the shared :class:`FCLayers`.
    n_hidden
        Nodes per hidden layer.
    dropout_rate
        Dropout rate of the hidden layers.
    distribution
        ``'ln'`` (logistic normal: softmax of the Normal sample) or ``'normal'``.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Iterable[int] = None,
        n_layers: int = 2,
        n_hidden: int = 256,
        dropout_rate: float = 0.1,
        distribution: str = "ln",
    ):
        super().__init__()
        check_option("distribution", distribution, LATENT_DISTRIBUTIONS)
        self.encoder = _hidden_layers(n_input, n_hidden, n_cat_list, n_layers, dropout_rate)

        def block():
            return nn.Sequential(
                nn.Linear(n_hidden, n_hidden), nn.BatchNorm1d(n_hidden), nn.ReLU(), Dropout(p=dropout_rate)
            )

        self.z_encoder = block()
        self.z_mean_encoder = nn.Linear(n_hidden, n_output)
        self.z_var_encoder = nn.Linear(n_hidden, n_output)
        self.l_gene_encoder = block()
        self.l_gene_mean_encoder = nn.Linear(n_hidden, 1)
        self.l_gene_var_encoder = nn.Linear(n_hidden, 1)

        self.distribution = distribution
        self.z_transformation = nn.Softmax(dim=-1) if distribution == "ln" else identity
        self.l_transformation = torch.exp

    def reparameterize_transformation(self, mu, var):
        """Draw ``untran_z ~ N(mu, var)`` (reparameterised) and return ``(z_transformation(untran_z), untran_z)``."""
        untran_z = mu + var.sqrt() * torch.randn_like(mu)
        return self.z_transformation(untran_z), untran_z

    def forward(self, data: torch.Tensor, *cat_list: int):
        """Encode ``data``, ``(n_cells, n_input)``.

        Returns
        -------
        tuple
            ``qz_m``, ``qz_v`` (``(n_cells, n_output)``), ``ql_m``, ``ql_v`` (``(n_cells, 1)``),
            ``latent`` (dict: ``z``, ``l`` the sampled latent values and library size) and
            ``untran_latent`` (dict: ``z``, ``l`` before the softmax / exp transformations).
        """
        q = self.encoder(data, *cat_list)
        qz = self.z_encoder(q)
        qz_m = self.z_mean_encoder(qz)
        qz_v = torch.exp(self.z_var_encoder(qz)) + 1e-4
        z, untran_z = self.reparameterize_transformation(qz_m, qz_v)

        ql_gene = self.l_gene_encoder(q)
        ql_m = self.l_gene_mean_encoder(ql_gene)
        ql_v = torch.exp(self.l_gene_var_encoder(ql_gene)) + 1e-4
        log_library_gene = torch.clamp(reparameterize_gaussian(ql_m, ql_v), max=15)
        library_gene = self.l_transformation(log_library_gene)

        latent = {"z": z, "l": library_gene}
        untran_latent = {"z": untran_z, "l": log_library_gene}
        return qz_m, qz_v, ql_m, ql_v, latent, untran_latent
