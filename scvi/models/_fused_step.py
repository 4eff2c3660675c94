"""The training loss of scVI's default :class:`~scvi.models.VAE` as one autograd step on the CPU.

Between its large products, a training step of the default VAE (one hidden layer per network,
batch norm, ReLU, dropout in the encoders, normal latent, NB / ZINB with one dispersion per gene)
runs about two hundred small torch operations, forward and backward: batch norm, ReLU, dropout,
the Gaussian heads, the reparameterisation, the KL terms. Each costs microseconds of dispatch
and autograd bookkeeping for far less arithmetic. Here the forward pass runs the large products
with torch, the small layers with a few calls of the compiled kernels (``scvi/_kernels.c``) and
the likelihood with the fused decoder kernel (:mod:`scvi.models._fused_likelihood`), and the
backward pass is written out the same way: one autograd node instead of about seventy.

The results are those of :meth:`VAE.forward <scvi.models.VAE.forward>` up to float32 rounding,
with the same random draws in the same order (the encoders' dropout masks and latent noise) and
the same updates of the batch-norm running statistics. Anything else (other layers or options,
hooks, frozen parameters, evaluation or no-grad mode, other devices, counts the likelihood kernel
does not take) takes the module-by-module path. Mostly-zero inputs go through the encoders' first
layers with the sparse-input kernels, as in the module path (:mod:`scvi.models._sparse_input`).
"""
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from scvi._compiled import address as _address
from scvi._compiled import kernels as _kernels

from . import _fused_likelihood as fused_likelihood
from ._sparse_input import SparseStructure, sparse_linear_forward, sparse_linear_weight_grad, structure_for
from .log_likelihood import LOG_EPS
from .modules import Dropout, Encoder, FCLayers, Linear

#: Whether the fused step is used where it applies (tests switch it off to compare both paths).
ENABLED = _kernels is not None and hasattr(_kernels, "bn_relu_forward")


def _hidden_layer(fc_layers, dropout: bool) -> Optional[Tuple[nn.Linear, nn.BatchNorm1d, Optional[nn.Module]]]:
    """``(linear, batch_norm, dropout)`` of an :class:`FCLayers` with one layer of the usual
    form (dropout ``None`` when absent), or ``None``."""
    if type(fc_layers) is not FCLayers:
        return None
    layers = fc_layers.fc_layers
    if len(layers) != 1:
        return None
    linear, batch_norm, relu, drop = layers[0]
    if type(linear) not in (nn.Linear, Linear) or linear.bias is None:
        return None
    if type(batch_norm) is not nn.BatchNorm1d or not batch_norm.affine or not batch_norm.track_running_stats:
        return None
    if batch_norm.momentum is None or not batch_norm.training or type(relu) is not nn.ReLU:
        return None
    if drop is not None and (not dropout or type(drop) is not Dropout or not drop.training):
        return None
    if drop is not None and (not 0 < drop.p < 1 or drop.inplace):
        return None
    return linear, batch_norm, drop


# torch's hooks on every module (``register_module_forward_hook`` ...): the fused step would skip them
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs",
)


def _head(layer) -> bool:
    return type(layer) is nn.Linear and layer.bias is not None


def _plan(vae) -> Optional[list]:
    """The layers of the fused step for ``vae``, or ``None`` when it does not apply."""
    from .vae import VAE

    if vae.latent_distribution != "normal" or not vae._fused_loss_applies():
        return None
    if any(getattr(type(vae), name) is not getattr(VAE, name) for name in ("_encode", "_encoder_input")):
        return None
    module_globals = torch.nn.modules.module.__dict__
    if any(module_globals.get(name) for name in _GLOBAL_HOOKS):
        return None
    for module in vae.modules():
        if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks:
            return None
        if getattr(module, "_backward_pre_hooks", None):
            return None
    encoders = []
    for encoder in (vae.z_encoder, vae.l_encoder):
        if type(encoder) is not Encoder:  # a subclass may encode differently
            return None
        layer = _hidden_layer(encoder.encoder, dropout=True)
        heads = _head(encoder.mean_encoder) and _head(encoder.var_encoder)
        if layer is None or sum(encoder.encoder.n_cat_list) or not heads:
            return None
        encoders.append((*layer, encoder.mean_encoder, encoder.var_encoder))
    decoder = vae.decoder
    hidden = _hidden_layer(decoder.px_decoder, dropout=False)
    n_cats = decoder.px_decoder.n_cat_list
    if hidden is None or len(n_cats) > 1 or hidden[2] is not None:
        return None
    return [encoders, hidden[:2], n_cats[0] if n_cats else 0]


def vae_training_loss(vae, x, local_l_mean, local_l_var, batch_index) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``(reconstruction loss + library KL, latent KL)`` per cell, or ``None`` where the fused step
    does not apply (then :meth:`VAE.forward` computes them module by module).

    Parameters
    ----------
    vae
        A :class:`~scvi.models.VAE` in training mode.
    x
        Counts, shape ``(n, n_genes)``.
    local_l_mean, local_l_var
        Prior of the log library size, shape ``(n, 1)``.
    batch_index
        Batch of each cell, shape ``(n, 1)`` (``None`` without batches).

    Returns
    -------
    tuple or None
        Two tensors of shape ``(n,)``, differentiable in the model's parameters.
    """
    if not ENABLED or not fused_likelihood.ENABLED or not vae.training or not torch.is_grad_enabled():
        return None
    if x.dim() != 2 or x.dtype != torch.float32 or x.device.type != "cpu" or x.requires_grad or x.shape[0] < 2:
        return None
    plan = _plan(vae)
    if plan is None:
        return None
    (z_layers, l_layers), (dec_linear, dec_norm), n_cat = plan
    n = x.shape[0]
    priors = [t for t in (local_l_mean, local_l_var) if t is not None]
    if len(priors) != 2 or any(t.dtype != torch.float32 or t.device.type != "cpu" or t.numel() != n for t in priors):
        return None
    cat = None
    if n_cat:
        if batch_index is None or batch_index.numel() != n or batch_index.is_floating_point():
            return None
        cat = batch_index.reshape(n).to(torch.int64).contiguous()
        low, high = int(cat.min()), int(cat.max())
        if low < 0 or high >= n_cat:
            raise ValueError(f"batch indices must be in [0, {n_cat}); got values in [{low}, {high}]")
    params = _parameters(vae, z_layers, l_layers, dec_linear, dec_norm)
    params_given = [p for p in params if p is not None]
    if not all(p.requires_grad and p.dtype == torch.float32 and p.device.type == "cpu" for p in params_given):
        return None
    counts = x.contiguous()
    count_range = fused_likelihood._count_range(counts)
    if count_range is None:
        return None
    encoder_input = torch.log1p(counts) if vae.log_variational else counts
    # mostly zeros: the first layers sum weight rows over the non-zeros (scvi.models._sparse_input)
    structure = structure_for(encoder_input, z_layers[0].weight, z_layers[0].bias)
    # the random draws of the module path, in its order: each encoder's dropout mask, then its noise
    draws = []
    for linear, _, dropout, mean_layer, _ in (z_layers, l_layers):
        mask = None if dropout is None else dropout.float32_mask((n, linear.out_features))
        draws += [mask, torch.randn(n, mean_layer.out_features, dtype=torch.float32)]
    state = _State((z_layers[1], l_layers[1], dec_norm), cat, count_range, structure)
    l_mean = local_l_mean.detach().reshape(n).contiguous()
    l_var = local_l_var.detach().reshape(n).contiguous()
    return _FusedVAEStep.apply(state, counts, encoder_input, l_mean, l_var, *draws, *params)


def _parameters(vae, z_layers, l_layers, dec_linear, dec_norm) -> List[Optional[torch.Tensor]]:
    params = []
    for linear, norm, _, mean_layer, var_layer in (z_layers, l_layers):
        params += [linear.weight, linear.bias, norm.weight, norm.bias]
        params += [mean_layer.weight, mean_layer.bias, var_layer.weight, var_layer.bias]
    decoder = vae.decoder
    dropout_layer = decoder.px_dropout_decoder if vae.reconstruction_loss == "zinb" else None
    params += [dec_linear.weight, dec_linear.bias, dec_norm.weight, dec_norm.bias]
    params += [decoder.px_scale_decoder[0].weight, decoder.px_scale_decoder[0].bias]
    params += [None, None] if dropout_layer is None else [dropout_layer.weight, dropout_layer.bias]
    params.append(vae.px_r)
    return params


class _State(NamedTuple):
    """What the autograd step needs besides tensors."""

    norms: Tuple[nn.BatchNorm1d, ...]  # batch norms of the z encoder, library encoder and decoder
    cat: Optional[torch.Tensor]  # batch index of each cell, (n,) int64, or None without batches
    count_range: Tuple[int, int]  # of the counts, for the likelihood kernel
    structure: Optional[SparseStructure]  # of the encoder input when mostly zeros, else None


def _bn_relu(a: torch.Tensor, norm: nn.BatchNorm1d, gamma, beta, mask) -> Tuple[torch.Tensor, ...]:
    """Training batch norm, ReLU and dropout of ``a`` (updates ``norm``'s running statistics)."""
    n, c = a.shape
    out = torch.empty(n, c, dtype=torch.float32)
    save_mean, save_invstd = torch.empty(c, dtype=torch.float32), torch.empty(c, dtype=torch.float32)
    running_mean, running_var = norm.running_mean, norm.running_var
    batches = norm.num_batches_tracked
    _kernels.bn_relu_forward(
        a.data_ptr(), n, c, gamma.data_ptr(), beta.data_ptr(), running_mean.data_ptr(), running_var.data_ptr(),
        _address(batches), float(norm.momentum), float(norm.eps), _address(mask),
        out.data_ptr(), save_mean.data_ptr(), save_invstd.data_ptr(),
    )  # fmt: skip
    return out, save_mean, save_invstd


def _bn_relu_backward(d_out, out, mask, a, gamma, save_mean, save_invstd) -> Tuple[torch.Tensor, ...]:
    n, c = a.shape
    d_a = torch.empty(n, c, dtype=torch.float32)
    d_gamma, d_beta = torch.empty(c, dtype=torch.float32), torch.empty(c, dtype=torch.float32)
    _kernels.bn_relu_backward(
        d_out.data_ptr(), out.data_ptr(), _address(mask), a.data_ptr(), n, c, gamma.data_ptr(),
        save_mean.data_ptr(), save_invstd.data_ptr(), d_a.data_ptr(), d_gamma.data_ptr(), d_beta.data_ptr(),
    )  # fmt: skip
    return d_a, d_gamma, d_beta


def _small_linear(x, weight, bias, cat=None) -> torch.Tensor:
    """``x @ weight[:, :k]^T + bias`` (+ the weight column of each row's category)."""
    n, k = x.shape
    out = torch.empty(n, weight.shape[0], dtype=torch.float32)
    _kernels.small_linear(
        x.data_ptr(), n, k, weight.data_ptr(), weight.shape[1], bias.data_ptr(), _address(cat), weight.shape[0],
        out.data_ptr(),
    )  # fmt: skip
    return out


def _small_linear_backward(d_out, x, weight, cat=None, d_x=None, accumulate=False) -> Tuple[torch.Tensor, torch.Tensor]:
    n, k = x.shape
    d_weight, d_bias = torch.empty_like(weight), torch.empty(weight.shape[0], dtype=torch.float32)
    _kernels.small_linear_backward(
        d_out.data_ptr(), n, weight.shape[0], x.data_ptr(), k, weight.data_ptr(), weight.shape[1], _address(cat),
        d_weight.data_ptr(), d_bias.data_ptr(), _address(d_x), accumulate,
    )  # fmt: skip
    return d_weight, d_bias


class _FusedVAEStep(torch.autograd.Function):
    """Forward and backward of the default VAE's per-cell training loss (see the module docstring).

    Inputs: the state, counts, encoder input, library prior mean and variance (``(n,)``), the
    draws (mask and noise of each encoder) and the 25 parameters of :func:`_parameters`.
    Outputs: ``reconstruction loss + library KL`` and ``latent KL``, each ``(n,)``.
    """

    @staticmethod
    def forward(ctx, state, counts, encoder_input, l_mean, l_var, z_mask, z_noise, l_mask, l_noise, *params):
        params = [None if p is None else p.detach() for p in params]
        n = counts.shape[0]
        saved = []
        latents, kls = [], []
        priors = ((None, None), (l_mean, l_var))
        for index, (mask, noise) in enumerate(((z_mask, z_noise), (l_mask, l_noise))):
            weight, bias, gamma, beta, mean_weight, mean_bias, var_weight, var_bias = params[8 * index : 8 * index + 8]
            if state.structure is None:
                a = torch.addmm(bias, encoder_input, weight.t())
            else:
                a = sparse_linear_forward(state.structure, weight, bias)
            h, save_mean, save_invstd = _bn_relu(a, state.norms[index], gamma, beta, mask)
            q_m = _small_linear(h, mean_weight, mean_bias)
            log_v = _small_linear(h, var_weight, var_bias)
            q_v, latent, kl = torch.empty_like(q_m), torch.empty_like(q_m), torch.empty(n, dtype=torch.float32)
            prior_mean, prior_var = priors[index]
            _kernels.gaussian_latent(
                q_m.data_ptr(), log_v.data_ptr(), noise.data_ptr(), _address(prior_mean), _address(prior_var),
                n, q_m.shape[1], q_v.data_ptr(), latent.data_ptr(), kl.data_ptr(),
            )  # fmt: skip
            saved += [a, h, save_mean, save_invstd, q_m, q_v]
            latents.append(latent)
            kls.append(kl)
        z, library = latents
        dec_weight, dec_bias, dec_gamma, dec_beta, scale_weight, scale_bias, drop_weight, drop_bias, px_r = params[16:]
        dec_a = _small_linear(z, dec_weight, dec_bias, state.cat)
        hidden, dec_mean, dec_invstd = _bn_relu(dec_a, state.norms[2], dec_gamma, dec_beta, None)
        theta = torch.exp(px_r)
        row_ll, derivatives = fused_likelihood.decoder_log_likelihood(
            counts, hidden, scale_weight, scale_bias, drop_weight, drop_bias, library.view(n), theta, LOG_EPS,
            state.count_range, True,
        )  # fmt: skip
        ctx.state = state
        ctx.save_for_backward(
            encoder_input, l_mean, l_var, z_mask, z_noise, l_mask, l_noise, *saved, z, dec_a, hidden, dec_mean,
            dec_invstd, *derivatives, theta, *params,
        )  # fmt: skip
        return kls[1] - row_ll, kls[0]

    @staticmethod
    def backward(ctx, grad_reconst, grad_kl_z):
        state = ctx.state
        (encoder_input, l_mean, l_var, z_mask, z_noise, l_mask, l_noise, *rest) = ctx.saved_tensors
        saved, rest = rest[:12], rest[12:]
        z, dec_a, hidden, dec_mean, dec_invstd, *derivatives, theta = rest[:10]
        params = rest[10:]
        grads: List[Optional[torch.Tensor]] = [None] * 25
        grad_reconst = grad_reconst.to(torch.float32).contiguous()
        grad_kl_z = grad_kl_z.to(torch.float32).contiguous()
        dec_weight, _, dec_gamma, _, scale_weight, _, drop_weight, _, _ = params[16:]
        # decoder's last layers and likelihood, from the gradient of each cell's log-likelihood
        needs = (True, True, True, drop_weight is not None, drop_weight is not None, True, True)
        grad_hidden, *layer_grads, grad_library, grad_theta = fused_likelihood.decoder_log_likelihood_backward(
            -grad_reconst, hidden, scale_weight, drop_weight, derivatives, needs
        )
        grads[20:24] = layer_grads
        grads[24] = grad_theta.mul_(theta).view(theta.shape)
        # decoder's hidden layer
        d_dec_a, grads[18], grads[19] = _bn_relu_backward(
            grad_hidden, hidden, None, dec_a, dec_gamma, dec_mean, dec_invstd
        )
        grad_z = torch.empty_like(z)
        grads[16], grads[17] = _small_linear_backward(d_dec_a, z, dec_weight, state.cat, grad_z)
        # encoders: latent draw and KL, heads, hidden layer, first layer
        priors = ((None, None), (l_mean, l_var))
        latent_grads = ((grad_z, grad_kl_z), (grad_library, grad_reconst))
        for index, (mask, noise) in enumerate(((z_mask, z_noise), (l_mask, l_noise))):
            a, h, save_mean, save_invstd, q_m, q_v = saved[6 * index : 6 * index + 6]
            _, _, gamma, _, mean_weight, _, var_weight, _ = params[8 * index : 8 * index + 8]
            grad_latent, grad_kl = latent_grads[index]
            prior_mean, prior_var = priors[index]
            grad_q_m, grad_log_v = torch.empty_like(q_m), torch.empty_like(q_m)
            _kernels.gaussian_latent_backward(
                q_m.data_ptr(), q_v.data_ptr(), noise.data_ptr(), _address(prior_mean), _address(prior_var),
                grad_latent.contiguous().data_ptr(), grad_kl.data_ptr(), q_m.shape[0], q_m.shape[1],
                grad_q_m.data_ptr(), grad_log_v.data_ptr(),
            )  # fmt: skip
            grad_h = torch.empty_like(h)
            base = 8 * index
            grads[base + 4], grads[base + 5] = _small_linear_backward(grad_q_m, h, mean_weight, None, grad_h)
            grads[base + 6], grads[base + 7] = _small_linear_backward(grad_log_v, h, var_weight, None, grad_h, True)
            d_a, grads[base + 2], grads[base + 3] = _bn_relu_backward(grad_h, h, mask, a, gamma, save_mean, save_invstd)
            if state.structure is None:
                grads[base] = torch.mm(d_a.t(), encoder_input)
            else:
                grads[base] = sparse_linear_weight_grad(state.structure, d_a)
            grads[base + 1] = d_a.sum(0)
        return (None, None, None, None, None, None, None, None, None, *grads)
