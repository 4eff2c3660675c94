"""Linear layers on mostly-zero inputs, from the compiled kernels (:mod:`scvi._compiled`).

An encoder's first layer reads the (log) counts, and single-cell counts are mostly zeros (90-95%
for typical data). A dense product spends ``n_cells * n_genes * n_hidden`` multiply-adds on them;
the kernels spend ``nnz * n_hidden`` (plus one transpose of the weights or of their gradient):
with the minibatch's non-zeros in compressed sparse rows and columns (built once per minibatch
and shared by the encoders that read it), the forward pass sums rows of ``W^T`` and the weight
gradient rows of the output gradient.

It applies to float32 CPU inputs that need no gradient, with at least :data:`MIN_INPUT_FEATURES`
features of which at most :data:`MAX_DENSITY` are non-zero; anything else takes
:func:`torch.nn.functional.linear`. Results differ from the dense product by float32 rounding
(the order of the sums), and a zero input never meets its weight: ``0 * inf`` gives ``0`` here
(``nan`` in a dense product).
"""
from typing import NamedTuple, Optional

import torch

from scvi._compiled import address as _address
from scvi._compiled import float32_cpu
from scvi._compiled import kernels as _kernels
from scvi._utils import LastTensorResult

#: Whether the kernels are used where they apply (tests switch them off to compare both paths).
ENABLED = _kernels is not None
#: Largest fraction of non-zero inputs taking the sparse path (beyond it the dense product, at the
#: machine's peak, costs less than the sums of rows).
MAX_DENSITY = 0.25
#: Narrower inputs (hidden layers) always take the dense product.
MIN_INPUT_FEATURES = 256


class SparseStructure(NamedTuple):
    """Compressed sparse rows (``indptr``, ``indices``, ``values``) and columns (``col_ptr``,
    ``row_indices``, ``col_values``) of an ``(n_rows, n_cols)`` float32 matrix."""

    indptr: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor
    col_ptr: torch.Tensor
    row_indices: torch.Tensor
    col_values: torch.Tensor

    @property
    def shape(self) -> tuple:
        """``(n_rows, n_cols)`` of the matrix."""
        return self.indptr.shape[0] - 1, self.col_ptr.shape[0] - 1


def _build_structure(x: torch.Tensor) -> Optional[SparseStructure]:
    n_rows, n_cols = x.shape
    indptr = torch.empty(n_rows + 1, dtype=torch.int64)
    nnz = _kernels.sparse_structure(x.data_ptr(), n_rows, n_cols, indptr.data_ptr())
    if nnz > MAX_DENSITY * n_rows * n_cols:
        return None
    indices, row_indices = torch.empty(nnz, dtype=torch.int32), torch.empty(nnz, dtype=torch.int32)
    values, col_values = torch.empty(nnz, dtype=torch.float32), torch.empty(nnz, dtype=torch.float32)
    col_ptr = torch.empty(n_cols + 1, dtype=torch.int64)
    _kernels.sparse_structure(
        x.data_ptr(),
        n_rows,
        n_cols,
        indptr.data_ptr(),
        indices.data_ptr(),
        values.data_ptr(),
        col_ptr.data_ptr(),
        row_indices.data_ptr(),
        col_values.data_ptr(),
    )
    return SparseStructure(indptr, indices, values, col_ptr, row_indices, col_values)


# The z and library encoders read the same input tensor: its structure is built once.
_last_structure = LastTensorResult()


def sparse_structure(x: torch.Tensor) -> Optional[SparseStructure]:
    """The structure of a contiguous 2-d float32 CPU tensor, or ``None`` when it is not sparse enough."""
    return _last_structure.get(x, None, lambda: _build_structure(x))


def sparse_input_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``F.linear(x, weight, bias)`` skipping the zeros of ``x``, or ``None`` where it does not apply.

    Parameters
    ----------
    x
        Input, shape ``(n, n_in)``; it must not require gradients.
    weight
        Shape ``(n_out, n_in)``.
    bias
        Shape ``(n_out,)`` or ``None``.

    Returns
    -------
    torch.Tensor or None
        Shape ``(n, n_out)``, differentiable in ``weight`` and ``bias``.
    """
    structure = structure_for(x, weight, bias)
    if structure is None:
        return None
    return _SparseInputLinear.apply(x, weight, bias, structure)


def structure_for(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> Optional[SparseStructure]:
    """The structure :func:`sparse_input_linear` uses for these operands, ``None`` where it does not apply."""
    if not ENABLED or x.dim() != 2 or x.requires_grad or x.shape[1] < MIN_INPUT_FEATURES or not x.shape[0]:
        return None
    if not float32_cpu(x, weight, bias):
        return None
    if not x.is_contiguous() or weight.shape[1] != x.shape[1] or x.shape[0] >= 2**31:
        return None
    return sparse_structure(x)


def sparse_linear_forward(
    structure: SparseStructure, weight: torch.Tensor, bias: Optional[torch.Tensor]
) -> torch.Tensor:
    """``x @ weight^T + bias`` for the ``x`` of ``structure`` (shape ``(n, n_out)``)."""
    n_rows, n_in = structure.shape
    n_out = weight.shape[0]
    weight_rows = weight.detach().contiguous()
    bias_values = None if bias is None else bias.detach().contiguous()
    out = torch.empty(n_rows, n_out, dtype=torch.float32)
    work = torch.empty(n_in, n_out, dtype=torch.float32)  # W^T
    _kernels.sparse_input_linear(
        structure.indptr.data_ptr(),
        structure.indices.data_ptr(),
        structure.values.data_ptr(),
        weight_rows.data_ptr(),
        work.data_ptr(),
        _address(bias_values),
        out.data_ptr(),
        n_rows,
        n_in,
        n_out,
    )
    return out


def sparse_linear_weight_grad(structure: SparseStructure, grad_out: torch.Tensor) -> torch.Tensor:
    """``grad_out^T @ x`` for the ``x`` of ``structure`` (shape ``(n_out, n_in)``)."""
    n_rows, n_in = structure.shape
    n_out = grad_out.shape[1]
    grad_out = grad_out.to(torch.float32).contiguous()
    grad_weight = torch.empty(n_out, n_in, dtype=torch.float32)
    work = torch.empty(n_in, n_out, dtype=torch.float32)
    _kernels.sparse_input_linear_weight_grad(
        structure.col_ptr.data_ptr(),
        structure.row_indices.data_ptr(),
        structure.col_values.data_ptr(),
        grad_out.data_ptr(),
        grad_weight.data_ptr(),
        work.data_ptr(),
        n_rows,
        n_in,
        n_out,
    )
    return grad_weight


class _SparseInputLinear(torch.autograd.Function):
    """Autograd wrapper: the forward pass sums rows of ``W^T`` over the non-zeros of each input row,
    the backward pass sums rows of the output gradient over the non-zeros of each input column."""

    @staticmethod
    def forward(ctx, x, weight, bias, structure):
        ctx.structure = structure
        return sparse_linear_forward(structure, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        needs_weight, needs_bias = ctx.needs_input_grad[1:3]
        grad_weight = sparse_linear_weight_grad(ctx.structure, grad_out) if needs_weight else None
        grad_bias = grad_out.sum(0) if needs_bias else None
        return None, grad_weight, grad_bias, None
