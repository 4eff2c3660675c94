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


def fused_nb_family_from_logits(
    x: torch.Tensor,
    scale_logits: torch.Tensor,
    library: torch.Tensor,
    theta: torch.Tensor,
    pi: Optional[torch.Tensor],
    eps: float,
) -> Optional[torch.Tensor]:
    """Per-cell NB / ZINB log-likelihood with means ``exp(library) * softmax(scale_logits)``, or ``None``.

    The sum over genes of ``log_nb_positive(x, mu, theta)`` (``pi is None``) or
    ``log_zinb_positive(x, mu, theta, pi)`` with ``mu = exp(library) * softmax(scale_logits, -1)``,
    as scVI's decoder and reconstruction loss compute it, in one kernel call: the softmax, the means
    and the element-wise values are never stored, and the backward pass scales the stored
    derivatives in ``scale_logits``, ``library``, ``theta`` and ``pi``.

    Parameters
    ----------
    x
        Counts, shape ``(n, n_genes)``.
    scale_logits
        Logits of the normalised expression, shape ``(n, n_genes)``.
    library
        Log library sizes, shape ``(n, 1)``.
    theta
        Inverse dispersions, shape ``(n_genes,)`` (or ``(1, n_genes)``).
    pi
        Zero-inflation logits, shape ``(n, n_genes)``, or ``None`` for the NB.
    eps
        The constant inside the logarithms.

    Returns
    -------
    torch.Tensor or None
        Shape ``(n,)``; ``None`` where the kernel does not apply (then compute the decoder's
        outputs and the likelihood with torch operations): not float32 CPU tensors of these
        shapes, or counts that are not non-negative integers below ``2**24``.
    """
    if not ENABLED or x.dim() != 2 or not x.numel() or x.requires_grad:
        return None
    if not float32_cpu(x, scale_logits, library, theta, pi):
        return None
    if scale_logits.shape != x.shape or (pi is not None and pi.shape != x.shape):
        return None
    if library.shape != (x.shape[0], 1) or theta.numel() != x.shape[1]:
        return None
    counts = x.contiguous()
    count_range = _count_range(counts)
    if count_range is None:
        return None
    return _FusedLogitsNBFamilyLogLik.apply(counts, scale_logits, library, theta, pi, eps, *count_range)


class _FusedLogitsNBFamilyLogLik(torch.autograd.Function):
    """Autograd wrapper of ``nb_family_logits``: forward stores the derivatives of each cell's sum,
    backward scales them by the incoming per-cell gradient (``nb_family_backward`` with the
    gradient broadcast along genes)."""

    @staticmethod
    def forward(ctx, counts, scale_logits, library, theta, pi, eps, max_count, table_rows):
        n_rows, n_genes = counts.shape
        ctx.theta_shape = theta.shape
        logits = scale_logits.detach().contiguous()
        library_flat = library.detach().reshape(n_rows).contiguous()
        theta_flat = theta.detach().reshape(n_genes).contiguous()
        pi_rows = None if pi is None else pi.detach().contiguous()
        row_ll = torch.empty(n_rows, dtype=torch.float32)
        wants_grads = any(ctx.needs_input_grad[1:5])
        d_h = torch.empty_like(counts) if wants_grads else None
        d_library = torch.empty(n_rows, dtype=torch.float32) if wants_grads else None
        d_theta = torch.empty_like(counts) if wants_grads else None
        d_pi = torch.empty_like(counts) if wants_grads and pi is not None else None
        _kernels.nb_family_logits(
            counts.data_ptr(),
            logits.data_ptr(),
            library_flat.data_ptr(),
            theta_flat.data_ptr(),
            _address(pi_rows),
            row_ll.data_ptr(),
            _address(d_h),
            _address(d_library),
            _address(d_theta),
            _address(d_pi),
            *_size_arguments(counts, eps, max_count, table_rows),
        )
        ctx.save_for_backward(d_h, d_library, d_theta, d_pi)
        return row_ll

    @staticmethod
    def backward(ctx, grad):
        d_h, d_library, d_theta, d_pi = ctx.saved_tensors
        needs_h, needs_library, needs_theta, needs_pi = ctx.needs_input_grad[1:5]
        grad = grad.to(torch.float32).contiguous()
        # one gradient per row, broadcast along the genes (column stride 0)
        grad_h, grad_theta, grad_pi = _scale_derivatives(
            grad, 1, 0, d_h, d_theta, d_pi, needs_h, needs_theta, needs_pi
        )
        grad_library = (grad * d_library).unsqueeze(1) if needs_library else None
        return (
            None,
            grad_h,
            grad_library,
            None if grad_theta is None else grad_theta.view(ctx.theta_shape),
            grad_pi,
            None,
            None,
            None,
        )
