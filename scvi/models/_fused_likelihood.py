"""The NB / ZINB log-likelihood from the fused C kernel (:mod:`scvi._compiled`), when it applies.

The kernel computes the element-wise log-likelihood and its local derivatives in ``mu``,
``theta`` and ``pi`` in one pass over the minibatch (see ``scvi/_kernels.c``); the backward
pass only multiplies them by the incoming gradient. It is an optional compiled extension: when
it was not built (no C compiler at install time) or does not apply (float64, a per-cell
``theta``, non-integer counts, ...), :mod:`scvi.models.log_likelihood` computes the same values
with torch operations.
"""
from typing import Optional

import torch

from scvi._compiled import kernels as _kernels

#: Whether the kernel is used where it applies (tests switch it off to compare both paths).
ENABLED = _kernels is not None

# Counts below this many rows get their gamma-function terms from per-gene tables (at least
# _MIN_TABLE_ROWS, else a quarter of the number of cells: the tables cost O(rows * genes) to
# build); larger counts, rare, continue from the tables' last row with asymptotic series.
_MIN_TABLE_ROWS = 16


def _address(tensor: Optional[torch.Tensor]) -> int:
    return 0 if tensor is None else tensor.data_ptr()


def fused_nb_family(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi: Optional[torch.Tensor], eps: float
) -> Optional[torch.Tensor]:
    """Element-wise NB (``pi is None``) or ZINB log-likelihood from the kernel, or ``None`` when it does not apply.

    Applies to float32 CPU tensors where ``x``, ``mu`` (and ``pi``) have the same shape
    ``(..., n_genes)`` and the counts are non-negative integers below ``2**24`` (the kernel checks
    them in one pass). ``theta`` must have one value per gene: the caller checks it.
    """
    if not ENABLED or x.dim() < 1 or not x.numel() or x.requires_grad:
        return None
    tensors = (x, mu, theta) if pi is None else (x, mu, theta, pi)
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        return None
    n_genes = x.shape[-1]
    if mu.shape != x.shape or (pi is not None and pi.shape != x.shape):
        return None
    counts = x.reshape(-1, n_genes).contiguous()
    n_rows = counts.shape[0]
    max_count = _kernels.integer_max(counts.data_ptr(), n_rows, n_genes)
    if max_count < 0:
        return None
    table_rows = min(max_count + 1, max(_MIN_TABLE_ROWS, n_rows // 4))
    if table_rows * n_genes >= 2**31:  # the kernel indexes its tables with 32-bit integers
        return None
    return _FusedNBFamilyLogLik.apply(counts, mu, theta, pi, eps, max_count, table_rows).view(x.shape)


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
            n_rows,
            n_genes,
            float(eps),
            max_count,
            table_rows,
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
        grad_mu = torch.empty_like(d_mu) if needs_mu else None
        grad_pi = torch.empty_like(d_pi) if needs_pi and d_pi is not None else None
        grad_theta = torch.empty(n_genes, dtype=torch.float32) if needs_theta else None
        _kernels.nb_family_backward(
            grad.data_ptr(),
            grad.stride(0),
            grad.stride(1),
            d_mu.data_ptr(),
            d_theta.data_ptr(),
            _address(d_pi),
            _address(grad_mu),
            _address(grad_theta),
            _address(grad_pi),
            n_rows,
            n_genes,
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
