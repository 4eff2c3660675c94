"""The count log-likelihoods against scipy.stats, their limit cases, gradients and numerical stability."""
import numpy as np
import pytest
import scipy.stats as st
import torch

from scvi.models.log_likelihood import (
    _nb_family_autograd,
    digamma,
    log_factorial,
    log_mixture_nb,
    log_nb_positive,
    log_poisson,
    log_zinb_positive,
)

DT = torch.float64


def _params(n=6, g=5, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.poisson(3.0, size=(n, g)), dtype=DT)
    mu = torch.tensor(rng.uniform(0.1, 8.0, size=(n, g)), dtype=DT)
    theta = torch.tensor(rng.uniform(0.2, 20.0, size=g), dtype=DT)
    pi = torch.tensor(rng.normal(size=(n, g)), dtype=DT)
    return x, mu, theta, pi


def _scipy_nb(x, mu, theta):
    # scipy's nbinom(n, p): n successes with probability p; mean n (1 - p) / p
    theta = np.broadcast_to(theta, mu.shape)
    return st.nbinom.logpmf(x, theta, theta / (theta + mu))


def test_nb_matches_scipy():
    x, mu, theta, _ = _params()
    ours = log_nb_positive(x, mu, theta, eps=0.0).numpy()
    np.testing.assert_allclose(ours, _scipy_nb(x.numpy(), mu.numpy(), theta.numpy()), rtol=1e-10, atol=1e-10)


def test_zinb_matches_explicit_mixture():
    x, mu, theta, pi = _params()
    p = torch.sigmoid(pi).numpy()
    nb = np.exp(_scipy_nb(x.numpy(), mu.numpy(), theta.numpy()))
    expected = np.log(np.where(x.numpy() == 0, p, 0.0) + (1 - p) * nb)
    ours = log_zinb_positive(x, mu, theta, pi).numpy()  # zero counts are those below eps
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)


def test_zinb_without_zero_inflation_is_nb():
    x, mu, theta, _ = _params()
    gate_closed = torch.full_like(mu, -60.0)  # sigmoid(-60) ~ 1e-26
    np.testing.assert_allclose(
        log_zinb_positive(x, mu, theta, gate_closed).numpy(), log_nb_positive(x, mu, theta).numpy(), atol=1e-12
    )


def test_zinb_probabilities_sum_to_one():
    mu = torch.tensor([[0.5, 3.0, 12.0]], dtype=DT)
    theta = torch.tensor([0.7, 2.0, 30.0], dtype=DT)
    pi = torch.tensor([[-1.0, 0.5, 2.0]], dtype=DT)
    counts = torch.arange(400, dtype=DT).view(-1, 1).expand(400, 3)
    total = log_zinb_positive(counts, mu.expand(400, 3), theta, pi.expand(400, 3)).exp().sum(0)
    np.testing.assert_allclose(total.numpy(), 1.0, atol=1e-8)


@pytest.mark.parametrize("shared_theta", [True, False])
def test_mixture_nb_matches_explicit_mixture(shared_theta):
    x, mu, theta, pi = _params()
    mu_2 = mu * 3
    theta_2 = None if shared_theta else theta * 0.5
    p = torch.sigmoid(pi).numpy()
    nb_1 = np.exp(_scipy_nb(x.numpy(), mu.numpy(), theta.numpy()))
    nb_2 = np.exp(_scipy_nb(x.numpy(), mu_2.numpy(), (theta if shared_theta else theta_2).numpy()))
    expected = np.log(p * nb_1 + (1 - p) * nb_2)
    ours = log_mixture_nb(x, mu, mu_2, theta, theta_2, pi, eps=0.0).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9)


def test_poisson_matches_scipy():
    x, mu, _, _ = _params()
    np.testing.assert_allclose(
        log_poisson(x, mu, eps=0.0).numpy(), st.poisson.logpmf(x.numpy(), mu.numpy()), rtol=1e-10
    )


@pytest.mark.parametrize(
    "x_value, mu_value, theta_value",
    [
        (0.0, 0.0, 1.0),  # zero count, zero mean
        (0.0, 1e-30, 1e-8),  # tiny dispersion parameter
        (5.0, 0.0, 1.0),  # count with zero mean
        (1e7, 1e7, 1e-6),  # huge count, tiny theta
        (1e7, 1.0, 1e4),  # huge count, small mean
        (3.0, 1e12, 1e-8),
    ],
)
@pytest.mark.parametrize("kind", ["nb", "zinb", "mixture", "poisson"])
def test_finite_values_and_gradients_in_extreme_cases(x_value, mu_value, theta_value, kind):
    x = torch.full((2, 3), x_value)
    mu = torch.full((2, 3), mu_value, requires_grad=True)
    theta = torch.full((3,), theta_value, requires_grad=True)
    pi = torch.full((2, 3), 2.0, requires_grad=True)
    if kind == "nb":
        out, params = log_nb_positive(x, mu, theta), (mu, theta)
    elif kind == "zinb":
        out, params = log_zinb_positive(x, mu, theta, pi), (mu, theta, pi)
    elif kind == "mixture":
        out, params = log_mixture_nb(x, mu, mu * 2, theta, None, pi), (mu, theta, pi)
    else:
        out, params = log_poisson(x, mu), (mu,)
    assert torch.isfinite(out).all(), out
    grads = torch.autograd.grad(out.sum(), params)
    assert all(torch.isfinite(g).all() for g in grads), grads


@pytest.mark.parametrize(
    "x_shape, mu_shape, theta_shape, pi_shape",
    [
        ((7, 5), (7, 5), (5,), (7, 5)),  # per-gene theta
        ((7, 5), (3, 7, 5), (5,), (3, 7, 5)),  # several posterior samples
        ((3, 7, 5), (7, 5), (7, 5), (7, 5)),  # log-probability of several draws
        ((7, 5), (1, 5), (7, 5), (5,)),
        ((7, 5), (7, 5), (5,), None),  # negative binomial
        ((4, 7, 5), (7, 5), (5,), None),
    ],
)
def test_hand_written_gradients_match_autograd(x_shape, mu_shape, theta_shape, pi_shape):
    torch.manual_seed(0)
    x = torch.poisson(torch.rand(*x_shape, dtype=DT) * 3)
    mu = (torch.rand(*mu_shape, dtype=DT) * 4).requires_grad_()
    theta = (torch.rand(*theta_shape, dtype=DT) + 0.1).requires_grad_()
    pi = torch.randn(*pi_shape, dtype=DT).requires_grad_() if pi_shape else None
    params = [mu, theta] + ([pi] if pi is not None else [])

    def ours(*args):
        return log_zinb_positive(x, *args) if pi is not None else log_nb_positive(x, *args)

    assert torch.autograd.gradcheck(ours, params)
    reference = _nb_family_autograd(x, mu, theta.view(1, -1) if theta.dim() == 1 else theta, pi, 1e-8)
    out = ours(*params)
    assert out.shape == reference.shape
    torch.testing.assert_close(out, reference)
    weights = torch.randn_like(out)
    grads_ours = torch.autograd.grad(out, params, weights)
    grads_reference = torch.autograd.grad(reference, params, weights)
    for g_ours, g_ref in zip(grads_ours, grads_reference):
        torch.testing.assert_close(g_ours, g_ref)


def test_counts_requiring_gradients_fall_back_to_autograd():
    x, mu, theta, pi = _params()
    x.requires_grad_()
    out = log_zinb_positive(x, mu, theta, pi)
    (grad_x,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad_x).all()


@pytest.mark.parametrize("n", [3000, 30000])  # torch.digamma below 8192 elements, the series above
def test_digamma_matches_torch(n):
    v = torch.logspace(-6, 7, n, dtype=DT)
    torch.testing.assert_close(digamma(v), torch.digamma(v), rtol=1e-9, atol=1e-9)
    v32 = v.float()
    rel = (digamma(v32).double() - torch.digamma(v)).abs() / torch.digamma(v).abs().clamp(min=1.0)
    assert rel.max() < 1e-6


def test_log_factorial_table_and_fallback():
    counts = torch.tensor([[0.0, 1.0, 2.0, 170.0, 16383.0], [5.0, 16384.0, 1e6, 3.0, 0.0]])
    torch.testing.assert_close(log_factorial(counts), torch.lgamma(counts + 1))
    fractional = counts + 0.5  # normalised (non-integer) data: computed with lgamma
    torch.testing.assert_close(log_factorial(fractional), torch.lgamma(fractional + 1))
    torch.testing.assert_close(log_factorial(-counts - 0.5), torch.lgamma(-counts + 0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gamma_ratio_tables_match_lgamma_and_digamma(dtype):
    """The per-gene tables (with counts above the table size computed directly) are exact."""
    from scvi.models.log_likelihood import _gamma_ratio, _GammaRatioDirect, _GammaRatioTable

    torch.manual_seed(0)
    n_genes = 6
    theta = torch.tensor([1e-4, 0.05, 0.7, 3.0, 250.0, 1e4], dtype=dtype)
    x = torch.poisson(torch.rand(40, n_genes, dtype=torch.float64) * 5).to(dtype)
    x[0] = torch.tensor([0.0, 1.0, 20.0, 21.0, 500.0, 16383.0], dtype=dtype)  # above the 20-row cap
    terms = _gamma_ratio(x, theta)
    assert isinstance(terms, _GammaRatioTable) and terms.n_rows == 20 and terms.overflow is not None
    x64, theta64 = x.double(), theta.double()
    expected_value = torch.lgamma(x64 + theta64) - torch.lgamma(theta64) - torch.lgamma(x64 + 1)
    expected_derivative = torch.digamma(x64 + theta64) - torch.digamma(theta64)
    tol = dict(rtol=1e-5, atol=1e-3) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(terms.value().double(), expected_value, **tol)
    torch.testing.assert_close(terms.theta_derivative().double(), expected_derivative, **tol)
    if dtype == torch.float64:  # in float32, lgamma(x + 1e4) - lgamma(1e4) loses digits; the tables do not
        torch.testing.assert_close(terms.value(), _GammaRatioDirect(x, theta.view(1, -1)).value(), **tol)


def test_gamma_ratio_uses_direct_terms_when_tables_do_not_apply():
    from scvi.models.log_likelihood import _gamma_ratio, _GammaRatioDirect

    counts = torch.poisson(torch.rand(8, 5) * 3)
    theta = torch.rand(5) + 0.5
    assert isinstance(_gamma_ratio(counts + 0.5, theta), _GammaRatioDirect)  # normalised data
    assert isinstance(_gamma_ratio(counts, theta.expand(8, 5)), _GammaRatioDirect)  # theta per cell
    assert isinstance(_gamma_ratio(-counts - 1, theta), _GammaRatioDirect)  # negative values
    with_nan = counts.clone()
    with_nan[0, 0] = float("nan")
    assert isinstance(_gamma_ratio(with_nan, theta), _GammaRatioDirect)


@pytest.mark.parametrize("zero_inflated", [True, False])
@pytest.mark.parametrize("theta_per_cell", [False, True])
@pytest.mark.parametrize("integer_counts", [True, False])
def test_sparse_counts_formulation_matches_autograd(zero_inflated, theta_per_cell, integer_counts):
    """Mostly-zero counts take the sparse path (count terms on the non-zeros only): same values and
    gradients, with the gamma-function terms of the non-zero counts from per-gene tables (integer
    counts, one theta per gene; a count above the table is computed directly) or computed directly."""
    from scvi.models import log_likelihood as ll

    torch.manual_seed(1)
    x = torch.poisson(torch.rand(9, 7, dtype=DT) * 0.4)
    x[0, :3] = torch.tensor([250.0, 1.0, 3.0 if integer_counts else 2.5])  # a count above the table
    assert 0 < (x > 0).double().mean() < ll._SPARSE_MAX_DENSITY
    mu = (torch.rand(9, 7, dtype=DT) * 4).requires_grad_()
    theta = (torch.rand(*((9, 7) if theta_per_cell else (7,)), dtype=DT) + 0.1).requires_grad_()
    pi = torch.randn(9, 7, dtype=DT).requires_grad_() if zero_inflated else None
    params = [mu, theta] + ([pi] if zero_inflated else [])
    positions = ll._sparse_positions(x, mu, ll._as_row(theta), pi, 1e-8)
    assert positions is not None
    table = ll._GammaRatioTable.create_for_entries(x.view(-1)[positions], positions % 7, ll._as_row(theta), 7)
    assert (table is not None) == (integer_counts and not theta_per_cell)
    assert table is None or table.overflow is not None

    def ours(*args):
        return log_zinb_positive(x, *args) if zero_inflated else log_nb_positive(x, *args)

    assert torch.autograd.gradcheck(ours, params)
    reference = _nb_family_autograd(x, mu, ll._as_row(theta), pi, 1e-8)
    out = ours(*params)
    torch.testing.assert_close(out, reference)
    weights = torch.randn_like(out)
    for g_ours, g_ref in zip(torch.autograd.grad(out, params, weights), torch.autograd.grad(reference, params, weights)):
        torch.testing.assert_close(g_ours, g_ref)


def test_dense_or_negative_counts_do_not_take_the_sparse_path():
    from scvi.models import log_likelihood as ll

    mu, theta = torch.rand(6, 5) + 0.1, torch.rand(1, 5) + 0.5
    assert ll._sparse_positions(torch.ones(6, 5), mu, theta, None, 1e-8) is None  # dense
    sparse = torch.zeros(6, 5)
    sparse[0, 0] = 3.0
    assert ll._sparse_positions(sparse, mu, theta, None, 1e-8).tolist() == [0]
    assert ll._sparse_positions(sparse - 1, mu, theta, None, 1e-8) is None  # negative values
    assert ll._sparse_positions(sparse, mu.expand(3, 6, 5), theta, None, 1e-8) is None  # several samples


@pytest.mark.parametrize("scale", [0.3, 3.0])  # sparse and dense counts
def test_mixed_precision_inputs_are_promoted(scale):
    """float64 counts with float32 parameters give a float64 result and float32 gradients, as the plain formula."""
    torch.manual_seed(0)
    x = torch.poisson(torch.rand(20, 30, dtype=torch.float64) * scale)
    mu = (torch.rand(20, 30) + 0.1).requires_grad_()
    theta = (torch.rand(30) + 0.5).requires_grad_()
    pi = torch.randn(20, 30).requires_grad_()
    for out, params in ((log_zinb_positive(x, mu, theta, pi), (mu, theta, pi)), (log_nb_positive(x, mu, theta), (mu, theta))):
        reference = _nb_family_autograd(x, mu.double(), theta.double().view(1, -1), pi.double() if len(params) == 3 else None, 1e-8)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, reference)
        grads = torch.autograd.grad(out.sum(), params)
        assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])  # sparse path, table path, table with overflow
@pytest.mark.parametrize("zero_inflated", [True, False])
def test_non_contiguous_inputs(scale, zero_inflated):
    """Transposed (non-contiguous) counts and parameters give the reference values and gradients."""
    torch.manual_seed(0)
    x = torch.poisson(torch.rand(30, 20, dtype=DT) * scale).t()
    mu = (torch.rand(30, 20, dtype=DT) + 0.1).t().requires_grad_()
    theta = (torch.rand(30, dtype=DT) + 0.5).requires_grad_()
    pi = torch.randn(30, 20, dtype=DT).t().requires_grad_() if zero_inflated else None
    params = (mu, theta, pi) if zero_inflated else (mu, theta)
    out = log_zinb_positive(x, mu, theta, pi) if zero_inflated else log_nb_positive(x, mu, theta)
    reference = _nb_family_autograd(x, mu, theta.view(1, -1), pi, 1e-8)
    torch.testing.assert_close(out, reference)
    for g_ours, g_ref in zip(torch.autograd.grad(out.sum(), params), torch.autograd.grad(reference.sum(), params)):
        torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_a_single_shared_theta(scale):
    """One inverse dispersion for all genes (shape ``(1,)``) broadcasts on every path."""
    torch.manual_seed(0)
    x = torch.poisson(torch.rand(12, 9, dtype=DT) * scale)
    mu = (torch.rand(12, 9, dtype=DT) + 0.1).requires_grad_()
    theta = torch.tensor([1.7], dtype=DT, requires_grad=True)
    pi = torch.randn(12, 9, dtype=DT).requires_grad_()
    out = log_zinb_positive(x, mu, theta, pi)
    reference = _nb_family_autograd(x, mu, theta.view(1, -1), pi, 1e-8)
    torch.testing.assert_close(out, reference)
    for g_ours, g_ref in zip(torch.autograd.grad(out.sum(), (mu, theta, pi)), torch.autograd.grad(reference.sum(), (mu, theta, pi))):
        torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize(
    "x_shape, mu_shape, theta_shape",
    [((6, 4), (6, 4), (4,)), ((6, 4), (6, 4), (6, 4)), ((3, 6, 4), (6, 4), (4,))],
)
def test_shared_theta_mixture_gradients_match_autograd(x_shape, mu_shape, theta_shape):
    """The hand-written backward of the shared-theta mixture against autograd through the formula."""
    gen = torch.Generator().manual_seed(3)
    x = torch.poisson(torch.rand(*x_shape, dtype=DT, generator=gen) * 20)
    mu_1 = (torch.rand(*mu_shape, dtype=DT, generator=gen) * 10 + 0.5).requires_grad_()
    mu_2 = (torch.rand(*mu_shape, dtype=DT, generator=gen) * 30 + 0.5).requires_grad_()
    theta = (torch.rand(*theta_shape, dtype=DT, generator=gen) * 3 + 0.2).requires_grad_()
    pi = torch.randn(*mu_shape, dtype=DT, generator=gen).requires_grad_()
    params = (mu_1, mu_2, theta, pi)
    assert torch.autograd.gradcheck(lambda *p: log_mixture_nb(x, p[0], p[1], p[2], None, p[3]), params)
    ours = log_mixture_nb(x, mu_1, mu_2, theta, None, pi)
    # counts that require gradients take plain autograd through the same formula
    reference = log_mixture_nb(x.clone().requires_grad_(), mu_1, mu_2, theta, None, pi)
    torch.testing.assert_close(ours, reference)
    for ours_grad, reference_grad in zip(
        torch.autograd.grad(ours.sum(), params), torch.autograd.grad(reference.sum(), params)
    ):
        torch.testing.assert_close(ours_grad, reference_grad)
