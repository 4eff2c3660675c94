"""Log-likelihoods of count models (pure functions) and the legacy ELBO / marginal likelihood helpers.

The likelihood functions are element-wise: they broadcast their arguments and return a tensor of
the broadcast shape, to be summed over genes by the caller. They stay finite for zero counts,
very large counts, zero means and tiny inverse dispersions.
"""
import logging
from typing import Optional

import torch
import torch.nn.functional as F

from scvi.models._fused_likelihood import fused_nb_family

logger = logging.getLogger(__name__)

__all__ = [
    "log_zinb_positive",
    "log_nb_positive",
    "log_mixture_nb",
    "log_poisson",
    "compute_elbo",
    "compute_reconstruction_error",
    "compute_marginal_log_likelihood_scvi",
    "compute_marginal_log_likelihood_autozi",
]

#: ``eps`` of scVI's count distributions (added inside the logarithms).
LOG_EPS = 1e-8


def _as_row(theta: torch.Tensor) -> torch.Tensor:
    """A per-gene inverse dispersion of shape ``(n_genes,)`` broadcasts as ``(1, n_genes)``."""
    return theta.view(1, -1) if theta.dim() == 1 else theta


# Below this many elements, torch.digamma costs less than the operations of the series.
_DIGAMMA_SERIES_MIN_NUMEL = 8192


def digamma(v: torch.Tensor) -> torch.Tensor:
    """Digamma function of positive arguments, vectorised with elementary tensor operations.

    ``torch.digamma`` is several times slower than ``torch.lgamma`` on the CPU; this version
    shifts the argument by six with the recurrence ``psi(v) = psi(v + 1) - 1 / v`` and uses the
    asymptotic series, accurate to about 1e-7 (float32) for ``v > 0``. Its two dozen operations
    only pay off on large tensors: small ones (e.g. totalVI's proteins) use ``torch.digamma``.
    """
    if v.numel() < _DIGAMMA_SERIES_MIN_NUMEL:
        return torch.digamma(v)
    acc = torch.reciprocal(v)
    w = v + 1.0
    for _ in range(5):
        acc.add_(torch.reciprocal(w))
        w.add_(1.0)
    inv = torch.reciprocal(w)
    inv2 = inv * inv
    # psi(w) ~ log w - 1/(2w) - 1/(12w^2) + 1/(120w^4) - 1/(252w^6) + 1/(240w^8) - 1/(132w^10)
    series = inv2 * (-1.0 / 132) + 1.0 / 240
    for coef in (-1.0 / 252, 1.0 / 120, -1.0 / 12):
        series.mul_(inv2).add_(coef)
    series.mul_(inv2)
    return torch.log(w).sub_(inv, alpha=0.5).add_(series).sub_(acc)


_LOG_FACTORIAL_SIZE = 1 << 14
_log_factorial_tables = {}


def log_factorial(x: torch.Tensor) -> torch.Tensor:
    """``lgamma(x + 1)``; on the CPU, integer counts below 16384 are read from a table (much faster)."""
    if x.device.type == "cpu" and x.numel() and x.is_floating_point() and not x.requires_grad:
        as_int = x.to(torch.int32)
        if 0 <= int(as_int.min()) and int(as_int.max()) < _LOG_FACTORIAL_SIZE and torch.equal(as_int.to(x.dtype), x):
            key = (x.device, x.dtype)
            table = _log_factorial_tables.get(key)
            if table is None:
                table = torch.lgamma(torch.arange(_LOG_FACTORIAL_SIZE, dtype=torch.float64) + 1).to(x.device, x.dtype)
                _log_factorial_tables[key] = table
            return table.index_select(0, as_int.reshape(-1)).view(x.shape)
    return torch.lgamma(x + 1)


class _GammaRatioDirect:
    """``lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)`` and its ``theta``-derivative, computed directly.

    For any counts (including non-integer, normalised data) and any shape of ``theta``.
    """

    def __init__(self, x: torch.Tensor, theta: torch.Tensor):
        self.x, self.theta = x, theta

    def value(self) -> torch.Tensor:
        return torch.add(self.x, self.theta).lgamma_().sub_(log_factorial(self.x)).sub_(torch.lgamma(self.theta))

    def theta_derivative(self) -> torch.Tensor:
        """``digamma(x + theta) - digamma(theta)``."""
        return digamma(self.x + self.theta).sub_(digamma(self.theta))

    def zero_indicator(self, eps: float) -> torch.Tensor:
        """1.0 where the count is zero (below ``eps``), 0.0 elsewhere, in the dtype of ``x``."""
        return (self.x < eps).to(self.x.dtype)


class _GammaRatioTable:
    """The same terms for integer counts and a per-gene ``theta``, read from per-gene tables.

    For integer ``k``, ``lgamma(k + theta) - lgamma(theta) = sum_{j<k} log(theta + j)`` and
    ``digamma(k + theta) - digamma(theta) = sum_{j<k} 1 / (theta + j)``: cumulative sums over a
    ``(n_rows, n_genes)`` table (computed in float64) replace a full-size ``lgamma`` in the forward
    pass and two ``digamma`` in the backward pass, the most expensive steps of training on the CPU.
    Counts at or above ``n_rows`` (rare: the table is capped to stay small) are computed directly.
    The table values are exact sums, more accurate than the difference of two float32 ``lgamma``.
    """

    def __init__(
        self, x: torch.Tensor, theta_row: torch.Tensor, max_count: int, n_rows: int, genes: Optional[torch.Tensor] = None
    ):
        self.x = x
        self.shape = x.shape
        self.theta = theta_row.detach().reshape(-1)
        self.n_genes = self.theta.numel()
        self.genes = genes
        self.n_rows = n_rows
        self.overflow = None
        if genes is None:  # all entries of (..., n_genes) counts, in row-major (logical) order
            counts = x.to(torch.int32).reshape(-1, self.n_genes).contiguous()
            genes = torch.arange(self.n_genes, dtype=torch.int32, device=x.device)
        else:  # listed entries (1-D) and the gene of each
            counts = x.to(torch.int32)
        if max_count >= n_rows:
            overflow = torch.nonzero(counts.view(-1) >= n_rows).squeeze(1)
            self.overflow = (overflow, x.reshape(-1).index_select(0, overflow))
            counts = counts.clamp(max=n_rows - 1)
        # flat index of (count, gene) in a row-major (n_rows, n_genes) table
        self.index = torch.add(genes, counts, alpha=self.n_genes).view(-1)

    @staticmethod
    def _integer_range(x: torch.Tensor) -> Optional[int]:
        """The largest count when ``x`` holds non-negative integers below ``2**31``, else ``None``."""
        if x.device.type != "cpu" or x.requires_grad or not x.is_floating_point() or not x.numel():
            return None
        low, high = torch.aminmax(x)
        low, high = float(low), float(high)
        if not (low >= 0 and high < 2**31):  # also rejects NaN
            return None
        if float(torch.frac(x).max()) != 0.0:
            return None  # non-integer (normalised) data
        return int(high)

    @classmethod
    def create(cls, x: torch.Tensor, theta: torch.Tensor) -> Optional["_GammaRatioTable"]:
        """The table version for these counts, or ``None`` when the direct computation is needed."""
        if x.dim() < 2 or theta.dim() > 2 or not _is_per_gene(theta, x.shape[-1]):
            return None
        high = cls._integer_range(x)
        if high is None:
            return None
        # the table costs O(n_rows * n_genes): keep it well below the size of the counts
        # (counts above it are rare and computed directly; mostly-zero data takes the sparse path)
        cap = max(16, x.numel() // (2 * x.shape[-1]))
        return cls(x, theta, high, min(high + 1, cap))

    @classmethod
    def create_for_entries(
        cls, counts: torch.Tensor, genes: torch.Tensor, theta: torch.Tensor, n_genes: int
    ) -> Optional["_GammaRatioTable"]:
        """The table version for the listed entries ``counts`` (1-D) of the genes ``genes``, or ``None``.

        Used for the non-zero counts of sparse data: the table replaces two ``lgamma`` and two
        ``digamma`` (a few dozen small operations) on the entries.
        """
        if counts.dim() != 1 or not _is_per_gene(theta, n_genes):
            return None
        high = cls._integer_range(counts)
        if high is None:
            return None
        cap = max(16, counts.numel() // n_genes)
        return cls(counts, theta, high, min(high + 1, cap), genes=genes)

    def _table(self, increments) -> torch.Tensor:
        # increments in the working precision, sums accumulated in float64
        steps = self.theta + torch.arange(self.n_rows - 1, dtype=self.theta.dtype, device=self.theta.device).unsqueeze(1)
        table = torch.empty(self.n_rows, self.n_genes, dtype=torch.float64, device=self.theta.device)
        table[0] = 0.0
        torch.cumsum(increments(steps), dim=0, dtype=torch.float64, out=table[1:])
        return table

    def _gather(self, table: torch.Tensor, direct) -> torch.Tensor:
        out = table.to(self.theta.dtype).view(-1).index_select(0, self.index).view(self.shape)
        if self.overflow is not None:
            positions, counts = self.overflow
            genes = positions % self.n_genes if self.genes is None else self.genes.index_select(0, positions)
            theta = self.theta.index_select(0, genes)
            out.view(-1).index_copy_(0, positions, direct(counts, theta))
        return out

    def value(self) -> torch.Tensor:
        table = self._table(torch.log)
        table -= log_factorial(torch.arange(self.n_rows, dtype=torch.float64, device=table.device)).unsqueeze(1)
        return self._gather(table, lambda k, t: _GammaRatioDirect(k, t).value())

    def theta_derivative(self) -> torch.Tensor:
        return self._gather(self._table(torch.reciprocal), lambda k, t: _GammaRatioDirect(k, t).theta_derivative())

    def zero_indicator(self, eps: float) -> torch.Tensor:
        """``1 - min(x, 1)``: for non-negative integers, cheaper than a comparison and a cast."""
        return torch.clamp(self.x, max=1.0).neg_().add_(1.0)


def _gamma_ratio(x: torch.Tensor, theta: torch.Tensor):
    """The gamma-function terms of the NB log-likelihood: from tables when possible, else directly."""
    return _GammaRatioTable.create(x, theta) or _GammaRatioDirect(x, theta)


def _nb_zero_terms_(log_t: torch.Tensor, theta: torch.Tensor, eps: float):
    """``d = log(theta + eps) - log(t)`` (overwriting ``log_t``) and ``a = theta * d`` (log NB(0))."""
    d = log_t.neg_().add_(torch.log(theta + eps))
    return d, theta * d


def _zero_inflate_(log_nb: torch.Tensor, pi: torch.Tensor, log_nb_zero: torch.Tensor, is_zero: torch.Tensor):
    """``log ZINB = log NB - sp(pi) + [x = 0] sp(pi - a)``, written into ``log_nb``."""
    return log_nb.sub_(F.softplus(pi)).addcmul_(is_zero, F.softplus(pi - log_nb_zero))


def _zero_inflation_share(grad, pi, log_nb_zero, is_zero, pi_shape, needs_pi: bool):
    """``g0 = grad [x = 0] sigmoid(pi - a)`` and ``d/d pi = g0 - grad sigmoid(pi)`` (``None`` unless asked).

    ``[x = 0] sigmoid(pi - a) = 1 - d log ZINB / d a`` is the share of a zero count explained by
    the negative binomial's own zero.
    """
    g0 = torch.sub(pi, log_nb_zero).sigmoid_().mul_(is_zero).mul_(grad)
    grad_pi = torch.addcmul(g0, grad, torch.sigmoid(pi), value=-1.0).sum_to_size(pi_shape) if needs_pi else None
    return g0, grad_pi


def _zero_inflation_grads(grad, pi, log_nb_zero, is_zero, pi_shape, needs_pi: bool):
    """Gradients through the zero inflation: ``(d/d a, d/d pi)`` (``d/d pi`` is ``None`` unless asked);
    ``pi is None`` (NB) passes ``grad`` through."""
    if pi is None:
        return grad, None
    g0, grad_pi = _zero_inflation_share(grad, pi, log_nb_zero, is_zero, pi_shape, needs_pi)
    return torch.sub(grad, g0), grad_pi


def _nb_zero_theta_grad(r, theta, d, grad_a, eps: float) -> torch.Tensor:
    """``grad_a * d a / d theta`` with ``d a / d theta = d + theta * (1 / (theta + eps) - 1 / t)``, ``r = 1 / t``."""
    return torch.neg(r).add_(torch.reciprocal(theta + eps)).mul_(theta).add_(d).mul_(grad_a)


def _is_per_gene(values: torch.Tensor, n_genes: int) -> bool:
    """One value per gene (shape ``(n_genes,)`` or ``(1, n_genes)``)."""
    return values.shape[-1] == values.numel() == n_genes


class _NBFamilyLogLik(torch.autograd.Function):
    """Element-wise NB / ZINB log-likelihood with a hand-written backward pass.

    Autograd through the formula keeps a dozen intermediate tensors and differentiates
    ``lgamma`` with ``torch.digamma`` (slow on the CPU); here the forward pass needs two
    logarithms (and two softplus for the ZINB) over the full shape, the backward pass only cheap
    element-wise operations, and the gamma-function terms come from :func:`_gamma_ratio`.
    ``pi is None`` gives the negative binomial.

    With ``t = theta + mu``, ``a = theta * log(theta / t)`` (log NB(0)) and ``sp = softplus``:
    ``log NB(x) = a + x log(mu / t) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)``;
    ``log ZINB(x) = log NB(x) - sp(pi) + [x = 0] sp(pi - a)`` (at ``x = 0``, ``log NB = a`` and
    ``log(sigmoid(pi) + sigmoid(-pi) e^a) = a - sp(pi) + sp(pi - a)``).
    """

    @staticmethod
    def forward(ctx, x, mu, theta, pi, eps):
        ctx.eps = eps
        ctx.shapes = (mu.shape, theta.shape, None if pi is None else pi.shape)
        gamma_ratio = _gamma_ratio(x, theta)
        # in-place steps below write into buffers of the full broadcast shape
        if mu.shape == x.shape and (pi is None or pi.shape == x.shape) and theta.dim() <= x.dim():
            shape = x.shape  # the usual case, without torch.broadcast_shapes' Python overhead
        else:
            shape = torch.broadcast_shapes(x.shape, mu.shape, theta.shape, *(() if pi is None else (pi.shape,)))
        mu_eps = mu.expand(shape) + eps
        t = mu_eps + theta
        log_t = torch.log(t)
        log_nb = torch.log(mu_eps).sub_(log_t).mul_(x)
        d, log_nb_zero = _nb_zero_terms_(log_t, theta, eps)
        log_nb = log_nb.add_(log_nb_zero).add_(gamma_ratio.value())
        ctx.gamma_ratio = gamma_ratio
        if pi is None:
            ctx.save_for_backward(x, mu_eps, theta, t, d, None, None, None)
            return log_nb
        is_zero = gamma_ratio.zero_indicator(eps)
        res = _zero_inflate_(log_nb, pi, log_nb_zero, is_zero)
        ctx.save_for_backward(x, mu_eps, theta, t, d, pi, log_nb_zero, is_zero)
        return res

    @staticmethod
    def backward(ctx, grad):
        # With q = (x + theta) / t and g0 = grad * [x = 0] sigmoid(pi - a) (the share of a zero
        # count explained by the negative binomial's own zero, ZINB only):
        #   d/dmu    = grad (x / (mu + eps) - q) + g0 q
        #   d/dtheta = (grad - g0) u + grad (digamma(x + theta) - digamma(theta)),
        #   u = log(theta_eps / t) + theta / theta_eps - q
        # (g0 is zero wherever x > 0, and q = theta / t wherever x = 0.)
        mu_shape, theta_shape, pi_shape = ctx.shapes
        x, mu_eps, theta, t, d, pi, log_nb_zero, is_zero = ctx.saved_tensors
        q = torch.add(x, theta)
        q = q.div_(t) if q.shape == t.shape else q / t  # x may broadcast against the means
        grad_mu = grad_theta = grad_pi = g0 = None
        if pi is not None:
            g0, grad_pi = _zero_inflation_share(grad, pi, log_nb_zero, is_zero, pi_shape, ctx.needs_input_grad[3])
        if ctx.needs_input_grad[1]:
            grad_mu = torch.div(x, mu_eps).sub_(q).mul_(grad)
            if g0 is not None:
                grad_mu.addcmul_(g0, q)
            grad_mu = grad_mu.sum_to_size(mu_shape)
        if ctx.needs_input_grad[2]:
            u = torch.add(d, theta / (theta + ctx.eps)).sub_(q)
            psi = ctx.gamma_ratio.theta_derivative()  # shape of x, which may broadcast
            grad_theta = (psi.add_(u) if psi.shape == u.shape else psi + u).mul_(grad)
            if g0 is not None:
                grad_theta.addcmul_(g0, u, value=-1.0)
            grad_theta = grad_theta.sum_to_size(theta_shape)
        return None, grad_mu, grad_theta, grad_pi, None


# Use the sparse formulation when at most this fraction of the counts is non-zero.
_SPARSE_MAX_DENSITY = 0.3


class _SparseNBFamilyLogLik(torch.autograd.Function):
    """The NB / ZINB log-likelihood of mostly-zero counts, with the count terms on the non-zeros only.

    ``log NB(x) = a + [x > 0] (x log(mu / t) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1))``
    with ``a = theta log(theta / t)``: only ``a`` and the zero-inflation terms are computed over
    the full shape; everything that involves the counts (a logarithm of the mean and the gamma
    terms, from per-gene tables as in :class:`_GammaRatioTable` or with ``lgamma`` / ``digamma``)
    is computed for the non-zero entries and added at their positions. Same formulas as
    :class:`_NBFamilyLogLik`; used when ``x``, ``mu`` (and ``pi``) have the same shape and ``x`` is
    non-negative and sparse.
    """

    @staticmethod
    def forward(ctx, x, mu, theta, pi, positions, eps):
        ctx.eps = eps
        ctx.shapes = (theta.shape, None if pi is None else pi.shape)
        # flat positions index the row-major order: work on contiguous tensors
        mu = mu.contiguous()
        pi = None if pi is None else pi.contiguous()
        n_genes = ctx.n_genes = x.shape[-1]
        counts = x.reshape(-1).index_select(0, positions)
        genes = positions % n_genes
        mu_at = mu.reshape(-1).index_select(0, positions)
        t = mu + (theta + eps)
        log_t = torch.log(t)
        log_t_at = log_t.view(-1).index_select(0, positions)
        d, log_nb_zero = _nb_zero_terms_(log_t, theta, eps)
        gamma_ratio = ctx.gamma_ratio = (
            _GammaRatioTable.create_for_entries(counts, genes, theta, n_genes)
            or _GammaRatioDirect(counts, _values_at(theta, x.shape, positions, genes))
        )
        count_terms = torch.add(mu_at, eps).log_().sub_(log_t_at).mul_(counts).add_(gamma_ratio.value())
        is_zero = None
        res = log_nb_zero.clone()
        if pi is not None:
            is_zero = torch.ones(x.shape, dtype=log_nb_zero.dtype, device=x.device)
            is_zero.view(-1).index_fill_(0, positions, 0.0)
            res = _zero_inflate_(res, pi, log_nb_zero, is_zero)
        res.view(-1).index_add_(0, positions, count_terms)
        ctx.save_for_backward(mu, theta, t, d, pi, log_nb_zero, is_zero, positions, genes, counts, mu_at)
        return res

    @staticmethod
    def backward(ctx, grad):
        eps = ctx.eps
        theta_shape, pi_shape = ctx.shapes
        mu, theta, t, d, pi, log_nb_zero, is_zero, positions, genes, counts, mu_at = ctx.saved_tensors
        grad_mu = grad_theta = None
        grad_a, grad_pi = _zero_inflation_grads(grad, pi, log_nb_zero, is_zero, pi_shape, ctx.needs_input_grad[3])
        r = torch.reciprocal(t)
        grad_at = grad.reshape(-1).index_select(0, positions)
        r_at = r.view(-1).index_select(0, positions)
        if ctx.needs_input_grad[1]:
            grad_mu = torch.mul(grad_a, theta).mul_(r).neg_().contiguous()  # d a / d mu = -theta / t
            # d/dmu of the count terms: x / (mu + eps) - x / t
            sparse = torch.add(mu_at, eps).reciprocal_().sub_(r_at).mul_(counts).mul_(grad_at)
            grad_mu.view(-1).index_add_(0, positions, sparse)
        if ctx.needs_input_grad[2]:
            dense = _nb_zero_theta_grad(r, theta, d, grad_a, eps).contiguous()
            # the count terms: digamma(x + theta) - digamma(theta) - x / t
            sparse = ctx.gamma_ratio.theta_derivative().addcmul_(counts, r_at, value=-1.0)
            sparse.mul_(grad_at)
            if _is_per_gene(theta, ctx.n_genes):
                grad_theta = dense.sum_to_size(theta_shape).clone()
                grad_theta.view(-1).index_add_(0, genes, sparse)
            else:
                dense.view(-1).index_add_(0, positions, sparse)
                grad_theta = dense.sum_to_size(theta_shape)
        return None, grad_mu, grad_theta, grad_pi, None, None


def _values_at(values: torch.Tensor, shape, positions: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
    """``values`` broadcast to ``shape``, at the flat ``positions`` (``genes``: their last index)."""
    if _is_per_gene(values, shape[-1]):
        return values.reshape(-1).index_select(0, genes)
    return values.expand(shape).reshape(-1).index_select(0, positions)


def _sparse_positions(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi, eps: float):
    """Flat positions of the non-zero counts when the sparse formulation applies, else ``None``."""
    if x.device.type != "cpu" or not x.is_floating_point() or x.dim() < 2 or not x.numel():
        return None
    if mu.shape != x.shape or (pi is not None and pi.shape != x.shape):
        return None
    if theta.dim() > x.dim() or any(t not in (1, n) for t, n in zip(reversed(theta.shape), reversed(x.shape))):
        return None
    # a first look at a slice rules out clearly dense counts at a fraction of a full pass
    flat = x.reshape(-1)
    head = flat[:16384]
    if int(torch.count_nonzero(head)) > 1.2 * _SPARSE_MAX_DENSITY * head.numel():
        return None
    if int(torch.count_nonzero(flat)) > _SPARSE_MAX_DENSITY * x.numel():  # cheaper than listing them
        return None
    positions = torch.nonzero(flat).squeeze(1)
    # negative values, NaN or non-zero values below eps: the dense formulas decide
    if positions.numel() and not float(flat.index_select(0, positions).min()) >= eps:
        return None
    return positions


def _nb_family_autograd(x, mu, theta, pi, eps):
    """The same log-likelihood written with plain differentiable operations (reference)."""
    log_t = torch.log(theta + mu + eps)
    log_nb_zero = theta * (torch.log(theta + eps) - log_t)
    log_nb = (
        log_nb_zero
        + x * (torch.log(mu + eps) - log_t)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    if pi is None:
        return log_nb
    softplus_neg_pi = F.softplus(-pi)
    case_zero = F.softplus(log_nb_zero - pi) - softplus_neg_pi
    return torch.where(x < eps, case_zero, log_nb - pi - softplus_neg_pi)


def _nb_family(x, mu, theta, pi, eps):
    theta = _as_row(theta)
    dtype = torch.promote_types(x.dtype, mu.dtype)
    if not (x.dtype == mu.dtype == theta.dtype == dtype and (pi is None or pi.dtype == dtype)):
        # mixed precisions: compute in the promoted type, as the plain formula would
        x, mu, theta = x.to(dtype), mu.to(dtype), theta.to(dtype)
        pi = None if pi is None else pi.to(dtype)
    if x.requires_grad:  # gradients in the counts: fall back to plain autograd
        return _nb_family_autograd(x, mu, theta, pi, eps)
    if _is_per_gene(theta, x.shape[-1]):
        fused = fused_nb_family(x, mu, theta, pi, eps)
        if fused is not None:
            return fused
    positions = _sparse_positions(x, mu, theta, pi, eps)
    if positions is not None:
        return _SparseNBFamilyLogLik.apply(x, mu, theta, pi, positions, eps)
    return _NBFamilyLogLik.apply(x, mu, theta, pi, eps)


def log_nb_positive(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Log-likelihood of counts under a negative binomial with mean ``mu`` and inverse dispersion ``theta``.

    Parameters
    ----------
    x
        Counts, shape ``(..., n_genes)``.
    mu
        Means (non-negative), broadcastable with ``x``.
    theta
        Inverse dispersions (positive), shape ``(n_genes,)`` or broadcastable with ``x``.
    eps
        Constant added inside the logarithms for numerical stability.

    Returns
    -------
    torch.Tensor
        Element-wise log-likelihood, the broadcast shape of the inputs. Differentiable (first
        order) in ``mu`` and ``theta``.
    """
    return _nb_family(x, mu, theta, None, eps)


def log_zinb_positive(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Log-likelihood of counts under a zero-inflated negative binomial.

    Parameters
    ----------
    x
        Counts, shape ``(..., n_genes)``.
    mu
        Means of the negative binomial component (non-negative).
    theta
        Inverse dispersions (positive), shape ``(n_genes,)`` or broadcastable with ``x``.
    pi
        Logits of the zero-inflation probability (real).
    eps
        Constant added inside the logarithms for numerical stability.

    Returns
    -------
    torch.Tensor
        Element-wise log-likelihood, the broadcast shape of the inputs. Differentiable (first
        order) in ``mu``, ``theta`` and ``pi``.

    Notes
    -----
    With ``p = sigmoid(pi)``: ``log(p + (1 - p) NB(0))`` for zero counts and
    ``log(1 - p) + log NB(x)`` otherwise, written with softplus so that it is finite for any logit.
    """
    return _nb_family(x, mu, theta, pi, eps)


def log_mixture_nb(
    x: torch.Tensor,
    mu_1: torch.Tensor,
    mu_2: torch.Tensor,
    theta_1: torch.Tensor,
    theta_2: Optional[torch.Tensor],
    pi: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Log-likelihood of counts under a mixture of two negative binomials (totalVI's protein model).

    Parameters
    ----------
    x
        Counts, shape ``(..., n_features)``.
    mu_1, mu_2
        Means of the first (for totalVI: background) and second component.
    theta_1
        Inverse dispersion of the first component.
    theta_2
        Inverse dispersion of the second component; ``None`` shares ``theta_1``.
    pi
        Logits of the probability of the first component.
    eps
        Constant added inside the logarithms for numerical stability.

    Returns
    -------
    torch.Tensor
        Element-wise log-likelihood, the broadcast shape of the inputs.
    """
    theta_1 = _as_row(theta_1)
    if theta_2 is not None:
        log_nb_1 = log_nb_positive(x, mu_1, theta_1, eps=eps)
        log_nb_2 = log_nb_positive(x, mu_2, _as_row(theta_2), eps=eps)
    else:
        theta = _as_row(theta_1)
        if not x.requires_grad and x.dtype == mu_1.dtype == mu_2.dtype == theta.dtype == pi.dtype:
            return _SharedThetaMixtureNB.apply(x, mu_1, mu_2, theta, pi, eps)
        log_nb_1, log_nb_2 = _shared_theta_components(x, mu_1, mu_2, theta, eps)[:2]
    # log(sigmoid(pi) NB_1 + (1 - sigmoid(pi)) NB_2)
    return torch.logaddexp(log_nb_1, log_nb_2 - pi) - F.softplus(-pi)


def _shared_theta_components(x, mu_1, mu_2, theta, eps):
    """``log NB(x; mu_1, theta)``, ``log NB(x; mu_2, theta)`` and the per-component pieces
    ``(t_i = theta + mu_i + eps, log t_i, mu_i + eps)`` (the ``lgamma`` terms are computed once)."""
    log_theta_eps = torch.log(theta + eps)
    common = _GammaRatioDirect(x, theta).value()
    log_nbs, pieces = [], []
    for mu in (mu_1, mu_2):
        mu_eps = mu + eps
        t = mu_eps + theta
        log_t = torch.log(t)
        log_nbs.append(theta * (log_theta_eps - log_t) + x * (torch.log(mu_eps) - log_t) + common)
        pieces.append((t, log_t, mu_eps))
    return log_nbs[0], log_nbs[1], pieces


class _SharedThetaMixtureNB(torch.autograd.Function):
    """:func:`log_mixture_nb` with one ``theta`` for both components, with a hand-written backward.

    With ``w = sigmoid(log NB_1 - log NB_2 + pi)`` (the first component's responsibility),
    ``q_i = (x + theta) / t_i`` and ``t_i = theta + mu_i + eps``:
    ``d/dmu_i = w_i (x / (mu_i + eps) - q_i)`` (``w_1 = w``, ``w_2 = 1 - w``),
    ``d/dpi = w - sigmoid(pi)`` and
    ``d/dtheta = digamma(x + theta) - digamma(theta) + log(theta + eps) + theta / (theta + eps)
    - sum_i w_i (log t_i + q_i)``. Autograd through the formula records about forty small
    operations (totalVI's proteins: a few cells x tens of proteins), this a dozen.
    """

    @staticmethod
    def forward(ctx, x, mu_1, mu_2, theta, pi, eps):
        log_nb_1, log_nb_2, pieces = _shared_theta_components(x, mu_1, mu_2, theta, eps)
        shifted = log_nb_2 - pi
        responsibility = torch.sigmoid(log_nb_1 - shifted)
        ctx.eps = eps
        ctx.shapes = (mu_1.shape, mu_2.shape, theta.shape, pi.shape)
        ctx.save_for_backward(x, theta, pi, responsibility, *pieces[0], *pieces[1])
        return torch.logaddexp(log_nb_1, shifted) - F.softplus(-pi)

    @staticmethod
    def backward(ctx, grad):
        x, theta, pi, w, t_1, log_t_1, mu_eps_1, t_2, log_t_2, mu_eps_2 = ctx.saved_tensors
        mu_1_shape, mu_2_shape, theta_shape, pi_shape = ctx.shapes
        x_theta = x + theta
        q_1, q_2 = x_theta / t_1, x_theta / t_2
        w_2 = 1.0 - w
        grads = [None] * 6
        if ctx.needs_input_grad[1]:
            grads[1] = (grad * w * (x / mu_eps_1 - q_1)).sum_to_size(mu_1_shape)
        if ctx.needs_input_grad[2]:
            grads[2] = (grad * w_2 * (x / mu_eps_2 - q_2)).sum_to_size(mu_2_shape)
        if ctx.needs_input_grad[3]:
            theta_eps = theta + ctx.eps
            psi = _GammaRatioDirect(x, theta).theta_derivative()  # digamma(x + theta) - digamma(theta)
            mixed = w * (log_t_1 + q_1) + w_2 * (log_t_2 + q_2)
            grads[3] = (grad * (psi + torch.log(theta_eps) + theta / theta_eps - mixed)).sum_to_size(theta_shape)
        if ctx.needs_input_grad[4]:
            grads[4] = (grad * (w - torch.sigmoid(pi))).sum_to_size(pi_shape)
        return tuple(grads)


def log_poisson(x: torch.Tensor, rate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Log-likelihood of counts under a Poisson distribution.

    Parameters
    ----------
    x
        Counts, shape ``(..., n_genes)``.
    rate
        Rates (non-negative), broadcastable with ``x``.
    eps
        Constant added inside the logarithm for numerical stability (a zero rate gives a finite
        value for non-zero counts).

    Returns
    -------
    torch.Tensor
        Element-wise log-likelihood.
    """
    return x * torch.log(rate + eps) - rate - log_factorial(x)


# The legacy evaluation helpers live in their own module; scVI 0.6 exposed them here.
from ._evaluation import (  # noqa: E402
    compute_elbo,
    compute_marginal_log_likelihood_autozi,
    compute_marginal_log_likelihood_scvi,
    compute_reconstruction_error,
)
