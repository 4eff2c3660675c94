"""The NB / ZINB log-likelihood from the fused C kernel (:mod:`scvi._compiled`), when it applies.

The kernel computes the element-wise log-likelihood and its local derivatives in ``mu``,
``theta`` and ``pi`` in one pass over the minibatch (see ``scvi/_kernels.c``); the backward
pass only multiplies them by the incoming gradient. It is an optional compiled extension: when
it was not built (no C compiler at install time) or does not apply (float64, a per-cell
``theta``, non-integer counts, ...), :mod:`scvi.models.log_likelihood` computes the same values
with torch operations.
"""
from typing import Optional, Tuple

import torch

from scvi._compiled import address as _address
from scvi._compiled import float32_cpu
from scvi._compiled import kernels as _kernels

#: Whether the kernel is used where it applies (tests switch it off to compare both paths).
ENABLED = _kernels is not None

# Counts below this many rows get their gamma-function terms from per-gene tables (at least
# _MIN_TABLE_ROWS, else a quarter of the number of cells: the tables cost O(rows * genes) to
# build); larger counts, rare, continue from the tables' last row with asymptotic series.
_MIN_TABLE_ROWS = 16


def fused_nb_family(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi: Optional[torch.Tensor], eps: float
) -> Optional[torch.Tensor]:
    """Element-wise NB (``pi is None``) or ZINB log-likelihood from the kernel, or ``None`` when it does not apply.

    Applies to float32 CPU tensors where ``x``, ``mu`` (and ``pi``) have the same shape
    ``(..., n_genes)`` and the counts are non-negative integers below ``2**24`` (the kernel checks
    them in one pass). ``theta`` must have one value per gene: the caller checks it.
    """
    if not ENABLED or x.dim() < 1 or not x.numel() or x.requires_grad or not float32_cpu(x, mu, theta, pi):
        return None
    if mu.shape != x.shape or (pi is not None and pi.shape != x.shape):
        return None
    counts = x.reshape(-1, x.shape[-1]).contiguous()
    count_range = _count_range(counts)
    if count_range is None:
        return None
    return _FusedNBFamilyLogLik.apply(counts, mu, theta, pi, eps, *count_range).view(x.shape)


def _count_range(counts: torch.Tensor) -> Optional[Tuple[int, int]]:
    """``(max_count, table_rows)`` for C-contiguous float32 ``(n_rows, n_genes)`` counts, or ``None``
    when they are not non-negative integers below ``2**24`` (one pass of the kernel checks them)."""
    n_rows, n_genes = counts.shape
    max_count = _kernels.integer_max(counts.data_ptr(), n_rows, n_genes)
    if max_count < 0:
        return None
    table_rows = min(max_count + 1, max(_MIN_TABLE_ROWS, n_rows // 4))
    if table_rows * n_genes >= 2**31:  # the kernel indexes its tables with 32-bit integers
        return None
    return max_count, table_rows


class _FusedNBFamilyLogLik(torch.autograd.Function):
    """Autograd wrapper of the kernel: forward stores the local derivatives, backward scales them
    by the incoming gradient (and sums the ``theta`` terms over cells) in one more kernel call."""

    @staticmethod
    def forward(ctx, counts, mu, theta, pi, eps, max_count, table_rows):
        n_rows, n_genes = counts.shape
        ctx.shapes = (mu.shape, theta.shape, None if pi is None else pi.shape)
        mu = mu.detach().reshape(n_rows, n_genes).contiguous()
        theta_flat = theta.detach().reshape(n_genes).contiguous()
        pi_rows = None if pi is None else pi.detach().reshape(n_rows, n_genes).contiguous()
        out = torch.empty_like(counts)
        wants_grads = any(ctx.needs_input_grad[1:4])
        d_mu = torch.empty_like(counts) if wants_grads else None
        d_theta = torch.empty_like(counts) if wants_grads else None
        d_pi = torch.empty_like(counts) if wants_grads and pi is not None else None
        _kernels.nb_family(
            counts.data_ptr(),
            mu.data_ptr(),
            theta_flat.data_ptr(),
            _address(pi_rows),
            out.data_ptr(),
            _address(d_mu),
            _address(d_theta),
            _address(d_pi),
            *_size_arguments(counts, eps, max_count, table_rows),
        )
        ctx.save_for_backward(d_mu, d_theta, d_pi)
        return out

    @staticmethod
    def backward(ctx, grad):
        d_mu, d_theta, d_pi = ctx.saved_tensors
        mu_shape, theta_shape, pi_shape = ctx.shapes
        needs_mu, needs_theta, needs_pi = ctx.needs_input_grad[1:4]
        n_rows, n_genes = d_mu.shape
        grad = grad.reshape(n_rows, n_genes)
        if grad.dtype != torch.float32 or grad.stride(-1) not in (0, 1):
            grad = grad.to(torch.float32).contiguous()
        grad_mu, grad_theta, grad_pi = _scale_derivatives(
            grad, grad.stride(0), grad.stride(1), d_mu, d_theta, d_pi, needs_mu, needs_theta, needs_pi
        )
        return (
            None,
            None if grad_mu is None else grad_mu.view(mu_shape),
            None if grad_theta is None else grad_theta.view(theta_shape),
            None if grad_pi is None else grad_pi.view(pi_shape),
            None,
            None,
            None,
        )


def _size_arguments(counts: torch.Tensor, eps: float, max_count: int, table_rows: int) -> tuple:
    """The trailing arguments of the NB / ZINB kernels: ``n_rows, n_genes, eps, max_count, n_table_rows``."""
    n_rows, n_genes = counts.shape
    return n_rows, n_genes, float(eps), max_count, table_rows


def _scale_derivatives(grad, row_stride, col_stride, d_mu, d_theta, d_pi, needs_mu, needs_theta, needs_pi):
    """``(grad * d_mu, sum over rows of grad * d_theta, grad * d_pi)`` from one kernel call, ``None``
    where not needed; ``grad`` is float32 with the given strides (column stride 0: broadcast)."""
    n_rows, n_genes = d_mu.shape
    grad_mu = torch.empty_like(d_mu) if needs_mu else None
    grad_pi = torch.empty_like(d_pi) if needs_pi and d_pi is not None else None
    grad_theta = torch.empty(n_genes, dtype=torch.float32) if needs_theta else None
    _kernels.nb_family_backward(
        grad.data_ptr(),
        row_stride,
        col_stride,
        d_mu.data_ptr(),
        d_theta.data_ptr(),
        _address(d_pi),
        _address(grad_mu),
        _address(grad_theta),
        _address(grad_pi),
        n_rows,
        n_genes,
    )
    return grad_mu, grad_theta, grad_pi


def fused_nb_family_from_hidden(
    x: torch.Tensor,
    hidden: torch.Tensor,
    scale_layer: torch.nn.Linear,
    dropout_layer: Optional[torch.nn.Linear],
    library: torch.Tensor,
    theta: torch.Tensor,
    eps: float,
) -> Optional[torch.Tensor]:
    """Per-cell NB / ZINB log-likelihood of the counts from the decoder's last hidden layer, or ``None``.

    The sum over genes of ``log_nb_positive(x, mu, theta)`` (``dropout_layer is None``) or
    ``log_zinb_positive(x, mu, theta, pi)`` with ``mu = exp(library) * softmax(scale_layer(hidden))``
    and ``pi = dropout_layer(hidden)``, as scVI's decoder and reconstruction loss compute them.
    The two products with the layers' weights are the only dense ``(n, n_genes)`` results; one
    kernel call adds the biases and computes the softmax, the means, the likelihood and its
    derivatives (written over those products), and the backward pass applies the per-cell
    gradient to the ``(n, n_hidden)`` side of the products rather than to the
    ``(n, n_genes)`` derivatives.

    Parameters
    ----------
    x
        Counts, shape ``(n, n_genes)``.
    hidden
        Output of the decoder's hidden layers, shape ``(n, n_hidden)``.
    scale_layer
        The linear layer giving the logits of the normalised expression (``n_hidden -> n_genes``).
    dropout_layer
        The linear layer giving the zero-inflation logits, or ``None`` for the NB.
    library
        Log library sizes, shape ``(n, 1)``.
    theta
        Inverse dispersions, shape ``(n_genes,)`` (or ``(1, n_genes)``).
    eps
        The constant inside the logarithms.

    Returns
    -------
    torch.Tensor or None
        Shape ``(n,)``, differentiable in ``hidden``, the layers' parameters, ``library`` and
        ``theta``; ``None`` where the kernel does not apply (then decode and compute the
        likelihood with torch operations): not float32 CPU tensors of these shapes, or counts
        that are not non-negative integers below ``2**24``.
    """
    if not ENABLED or x.dim() != 2 or not x.numel() or x.requires_grad or hidden.dim() != 2:
        return None
    dropout_parameters = (None, None) if dropout_layer is None else (dropout_layer.weight, dropout_layer.bias)
    parameters = (scale_layer.weight, scale_layer.bias, *dropout_parameters)
    if not float32_cpu(x, hidden, library, theta, *parameters):
        return None
    n_rows, n_genes = x.shape
    if hidden.shape[0] != n_rows or library.shape != (n_rows, 1) or theta.numel() != n_genes:
        return None
    weights, biases = parameters[0::2], parameters[1::2]
    if any(weight is not None and weight.shape != (n_genes, hidden.shape[1]) for weight in weights):
        return None
    if any(bias is not None and bias.shape != (n_genes,) for bias in biases):
        return None
    counts = x.contiguous()
    count_range = _count_range(counts)
    if count_range is None:
        return None
    return _FusedHiddenNBFamilyLogLik.apply(counts, hidden, *parameters, library, theta, eps, *count_range)


class _FusedHiddenNBFamilyLogLik(torch.autograd.Function):
    """Autograd wrapper of the decoder's last layers and ``nb_family_logits``.

    Forward: ``h = hidden @ W_scale^T`` and ``pi = hidden @ W_dropout^T`` (no bias: the kernel adds
    it), then the kernel, which writes the derivatives of each cell's sum in the logits over ``h``
    and ``pi``. Backward, with ``c`` the gradient of each cell's sum: ``W^T``-gradients
    ``d^T (c * hidden)``, bias gradients ``d^T c``, ``hidden``-gradient ``c * (d_h W_scale + d_pi W_dropout)``,
    the ``theta`` gradient from ``nb_family_backward`` (summed over cells in double).
    """

    @staticmethod
    def forward(
        ctx, counts, hidden, scale_weight, scale_bias, dropout_weight, dropout_bias, library, theta, eps, *count_range
    ):
        n_rows, n_genes = counts.shape
        ctx.theta_shape = theta.shape
        hidden = hidden.detach()
        scale_weight, dropout_weight = scale_weight.detach(), _detached(dropout_weight)
        wants_grads = any(ctx.needs_input_grad[1:8])
        row_ll, derivatives = decoder_log_likelihood(
            counts,
            hidden,
            scale_weight,
            _contiguous(scale_bias),
            dropout_weight,
            _contiguous(dropout_bias),
            library.detach().reshape(n_rows).contiguous(),
            theta.detach().reshape(n_genes).contiguous(),
            eps,
            count_range,
            wants_grads,
        )
        if wants_grads:
            ctx.save_for_backward(hidden, scale_weight, dropout_weight, *derivatives)
        return row_ll

    @staticmethod
    def backward(ctx, grad):
        hidden, scale_weight, dropout_weight, *derivatives = ctx.saved_tensors
        grads = decoder_log_likelihood_backward(
            grad.to(torch.float32).contiguous(), hidden, scale_weight, dropout_weight, derivatives,
            ctx.needs_input_grad[1:8],
        )  # fmt: skip
        grad_hidden, grad_scale_weight, grad_scale_bias, grad_dropout_weight, grad_dropout_bias = grads[:5]
        grad_library, grad_theta = grads[5:]
        return (
            None,
            grad_hidden,
            grad_scale_weight,
            grad_scale_bias,
            grad_dropout_weight,
            grad_dropout_bias,
            None if grad_library is None else grad_library.unsqueeze(1),
            None if grad_theta is None else grad_theta.view(ctx.theta_shape),
            None,
            None,
            None,
        )


def decoder_log_likelihood(
    counts, hidden, scale_weight, scale_bias, dropout_weight, dropout_bias, library, theta, eps, count_range,
    wants_grads,
) -> Tuple[torch.Tensor, tuple]:
    """Forward pass of :class:`_FusedHiddenNBFamilyLogLik` on detached float32 CPU tensors.

    ``hidden`` ``(n, n_hidden)``, weights ``(n_genes, n_hidden)``, biases ``(n_genes,)`` contiguous
    (dropout ones ``None`` for the NB), ``library`` ``(n,)`` and ``theta`` ``(n_genes,)`` contiguous.

    Returns
    -------
    tuple
        ``row_ll`` ``(n,)`` and the derivatives ``(d_h, d_library, d_theta, d_pi)`` of each cell's
        sum for :func:`decoder_log_likelihood_backward` (``None`` each without ``wants_grads``;
        ``d_pi`` ``None`` for the NB).
    """
    n_rows = counts.shape[0]
    logits = torch.mm(hidden, scale_weight.t())
    pi = None if dropout_weight is None else torch.mm(hidden, dropout_weight.t())
    row_ll = torch.empty(n_rows, dtype=torch.float32)
    # the derivatives in the logits overwrite the logits (the kernel reads each row first)
    d_h = logits if wants_grads else None
    d_pi = pi if wants_grads else None
    d_library = torch.empty(n_rows, dtype=torch.float32) if wants_grads else None
    d_theta = torch.empty_like(counts) if wants_grads else None
    _kernels.nb_family_logits(
        counts.data_ptr(),
        logits.data_ptr(),
        _address(scale_bias),
        library.data_ptr(),
        theta.data_ptr(),
        _address(pi),
        _address(dropout_bias),
        row_ll.data_ptr(),
        _address(d_h),
        _address(d_library),
        _address(d_theta),
        _address(d_pi),
        *_size_arguments(counts, eps, *count_range),
    )
    return row_ll, (d_h, d_library, d_theta, d_pi)


def decoder_log_likelihood_backward(grad, hidden, scale_weight, dropout_weight, derivatives, needs) -> tuple:
    """Gradients of :func:`decoder_log_likelihood` from ``grad``, the float32 contiguous gradient of
    each cell's sum ``(n,)``.

    ``needs``: whether to compute each of the gradients returned, in order: ``hidden``
    ``(n, n_hidden)``, scale weight, scale bias, dropout weight, dropout bias, ``library`` ``(n,)``
    and ``theta`` ``(n_genes,)`` (``None`` where not needed, and for the dropout layer of the NB).
    """
    d_h, d_library, d_theta, d_pi = derivatives
    needs_hidden, *needs_layers, needs_library, needs_theta = needs
    grad_column = grad.unsqueeze(1)
    layer_grads = [None] * 4
    scaled_hidden = hidden * grad_column if needs_layers[0] or needs_layers[2] else None
    grad_hidden = None
    # each (n, n_genes) derivative is read by its three products in a row, while in cache
    for d, weight, index in ((d_h, scale_weight, 0), (d_pi, dropout_weight, 2)):
        if d is None:
            continue
        if needs_layers[index]:
            layer_grads[index] = torch.mm(d.t(), scaled_hidden)
        if needs_hidden:
            grad_hidden = torch.mm(d, weight) if grad_hidden is None else grad_hidden.addmm_(d, weight)
        if needs_layers[index + 1]:
            layer_grads[index + 1] = torch.mv(d.t(), grad)
    if needs_hidden:
        grad_hidden = grad_hidden.mul_(grad_column)
    grad_library = grad * d_library if needs_library else None
    grad_theta = None
    if needs_theta:
        _, grad_theta, _ = _scale_derivatives(grad, 1, 0, d_h, d_theta, None, False, True, False)
    return (grad_hidden, *layer_grads, grad_library, grad_theta)


def _detached(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if tensor is None else tensor.detach()


def _contiguous(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if tensor is None else tensor.detach().contiguous()
