"""The fused C kernel of the NB / ZINB log-likelihoods against the float64 reference and the torch path."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from scvi.models import _fused_likelihood as fused
from scvi.models.log_likelihood import _nb_family_autograd, log_nb_positive, log_zinb_positive

requires_kernel = pytest.mark.skipif(
    fused._kernels is None, reason="compiled kernels unavailable: scvi._kernels not built (no C compiler) or SCVI_COMPILED_KERNELS=0"
)


def _inputs(n=64, g=37, seed=0, zero_inflated=True, big_counts=True):
    """float32 counts (zeros, small counts and, optionally, counts far beyond the kernel's tables)
    with means, inverse dispersions and logits spanning wide ranges."""
    rng = np.random.default_rng(seed)
    mu = np.exp(rng.uniform(-8, 6, size=(n, g)))
    theta = np.exp(rng.uniform(-5, 8, size=g))
    counts = rng.poisson(rng.gamma(np.minimum(theta, 50.0), np.minimum(mu, 200.0) / np.minimum(theta, 50.0)))
    counts[rng.random((n, g)) < 0.3] = 0
    mu[0, :4] = [0.0, 1e-30, 1e12, 3.0]
    if big_counts:
        counts[1, :3] = [300, 5000, 70000]  # beyond the tables: asymptotic series
    pi = rng.normal(0, 3, size=(n, g))
    pi[2, :4] = [-80.0, 80.0, -30.0, 30.0]
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (
        as_tensor(counts),
        as_tensor(mu).requires_grad_(),
        as_tensor(theta).requires_grad_(),
        as_tensor(pi).requires_grad_() if zero_inflated else None,
    )


def _log_likelihood(x, mu, theta, pi):
    return log_zinb_positive(x, mu, theta, pi) if pi is not None else log_nb_positive(x, mu, theta)


def _params(mu, theta, pi):
    return [mu, theta] + ([pi] if pi is not None else [])


def _assert_float32_accurate(out, reference, x, mu, theta):
    """``out`` within a few float32 roundings of the terms the log-likelihood sums.

    Its terms (``theta log(theta / t)``, ``x log(mu / t)``, ``lgamma(x + theta)``) can be much
    larger than the result: float32 rounding of the terms, not of the result, bounds the error
    (the torch implementation, and the original package, have the same bound).
    """
    x, mu, theta = x.double(), mu.detach().double(), theta.detach().double()
    log_t = torch.log(mu + theta + 1e-8).abs()
    scale = theta * (log_t + theta.log().abs()) + x * (log_t + (mu + 1e-8).log().abs()) + reference.abs() + 1.0
    error = (out.detach().double() - reference).abs()
    worst = (error / scale).max().item()
    assert worst < 1e-6, f"error {worst:.2e} x the size of the terms"


@pytest.fixture
def kernel_calls(record_calls):
    """The kernel's calls."""
    return record_calls(fused._FusedNBFamilyLogLik, "apply")


@requires_kernel
@pytest.mark.parametrize("zero_inflated", [True, False])
def test_kernel_matches_float64_reference(zero_inflated, kernel_calls):
    x, mu, theta, pi = _inputs(zero_inflated=zero_inflated)
    params = _params(mu, theta, pi)
    out = _log_likelihood(x, mu, theta, pi)
    assert len(kernel_calls) == 1 and out.dtype == torch.float32
    double = [p.detach().double().requires_grad_() for p in params]
    reference = _nb_family_autograd(
        x.double(), double[0], double[1].view(1, -1), double[2] if zero_inflated else None, 1e-8
    )
    _assert_float32_accurate(out, reference, x, mu, theta)
    weights = torch.randn(out.shape, dtype=torch.float64)
    grads = torch.autograd.grad(out, params, weights.float())
    grads_reference = torch.autograd.grad(reference, double, weights)
    for name, g, g_ref in zip(["mu", "theta", "pi"], grads, grads_reference):
        # d/dpi involves sigmoid(pi - theta log(theta / t)): for theta in the thousands the float32
        # logarithms round to ~1e-4 in it (the torch path too); the others are relative to their size
        atol = 5e-4 if name == "pi" else 1e-6 * g_ref.abs().max()
        torch.testing.assert_close(g.double(), g_ref, rtol=1e-4, atol=atol, msg=f"gradient in {name}")


@requires_kernel
@pytest.mark.parametrize("zero_inflated", [True, False])
def test_kernel_agrees_with_the_torch_path(zero_inflated, monkeypatch, kernel_calls):
    """Same values and gradients with the kernel switched off (the torch implementation)."""
    x, mu, theta, pi = _inputs(n=200, g=300, seed=3, zero_inflated=zero_inflated, big_counts=False)
    params = _params(mu, theta, pi)
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(fused, "ENABLED", enabled)
        out = _log_likelihood(x, mu, theta, pi)
        results.append((out, torch.autograd.grad(out.sum(), params)))
    assert len(kernel_calls) == 1
    double = [p.detach().double().requires_grad_() for p in params]
    reference = _nb_family_autograd(x.double(), double[0], double[1].view(1, -1), double[2] if zero_inflated else None, 1e-8)
    grads_reference = torch.autograd.grad(reference.sum(), double)
    (out_kernel, grads_kernel), (out_torch, grads_torch) = results
    _assert_float32_accurate(out_kernel, reference.detach(), x, mu, theta)
    _assert_float32_accurate(out_torch, reference.detach(), x, mu, theta)
    for name, g_kernel, g_torch, g_ref in zip(["mu", "theta", "pi"], grads_kernel, grads_torch, grads_reference):
        error_kernel = (g_kernel.double() - g_ref).abs().max()
        error_torch = (g_torch.double() - g_ref).abs().max()
        assert error_kernel <= 1.5 * error_torch + 1e-7 * g_ref.abs().max(), (name, error_kernel, error_torch)


@requires_kernel
def test_kernel_keeps_the_shape_of_batched_samples(kernel_calls):
    """(samples, cells, genes) inputs of one shape: the kernel sees rows, the result keeps the shape."""
    x, mu, theta, pi = _inputs(n=30, g=11, big_counts=False)
    x3, mu3, pi3 = (t.detach().expand(3, -1, -1).clone() for t in (x, mu, pi))
    out = log_zinb_positive(x3, mu3, theta, pi3)
    assert out.shape == (3, 30, 11) and len(kernel_calls) == 1
    # the table size depends on the number of rows: the same values up to float32 rounding
    torch.testing.assert_close(out[1], log_zinb_positive(x, mu, theta, pi), rtol=1e-5, atol=1e-5)


@requires_kernel
@pytest.mark.parametrize(
    "case",
    ["float64", "non-integer counts", "negative counts", "nan counts", "per-cell theta", "broadcast means"],
)
def test_inputs_outside_the_kernel_take_the_torch_path(case, kernel_calls):
    x, mu, theta, pi = _inputs(n=20, g=9, big_counts=False)
    if case == "float64":
        x, mu, theta, pi = x.double(), mu.detach().double(), theta.detach().double(), pi.detach().double()
    elif case == "non-integer counts":
        x = x + 0.5
    elif case == "negative counts":
        x[0, 0] = -1.0
    elif case == "nan counts":
        x[0, 0] = float("nan")
    elif case == "per-cell theta":
        theta = theta.detach().expand(20, 9).clone()
    elif case == "broadcast means":
        mu = mu.detach()[:1]
    log_zinb_positive(x, mu, theta, pi)
    assert kernel_calls == []


@requires_kernel
def test_non_finite_parameters_propagate():
    x, mu, theta, pi = _inputs(n=8, g=6, big_counts=False)
    mu, pi = mu.detach().clone(), pi.detach().clone()
    mu[0, 0] = float("nan")
    pi[1, 1] = float("nan")
    mu[2, 2] = float("inf")
    out = log_zinb_positive(x, mu, theta, pi)
    assert torch.isnan(out[0, 0]) and torch.isnan(out[1, 1])
    assert not torch.isfinite(out[2, 2])
    finite = torch.ones_like(out, dtype=torch.bool)
    finite[0, 0] = finite[1, 1] = finite[2, 2] = False
    assert torch.isfinite(out[finite]).all()


@requires_kernel
def test_backward_twice_and_without_gradients():
    x, mu, theta, pi = _inputs(n=16, g=10, big_counts=False)
    params = _params(mu, theta, pi)
    out = log_zinb_positive(x, mu, theta, pi)
    first = torch.autograd.grad(out.sum(), params, retain_graph=True)
    second = torch.autograd.grad(out.sum(), params)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    with torch.no_grad():
        torch.testing.assert_close(log_zinb_positive(x, mu, theta, pi), out.detach())


@requires_kernel
def test_results_do_not_depend_on_the_number_of_threads():
    x, mu, theta, pi = _inputs(n=300, g=200, big_counts=True)
    threads = torch.get_num_threads()
    try:
        results = []
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            out = log_zinb_positive(x, mu, theta, pi)
            results.append([out] + list(torch.autograd.grad(out.sum(), [mu, theta, pi])))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_environment_variable_switches_the_kernel_off():
    code = "from scvi.models import _fused_likelihood as f; print(f.ENABLED)"
    env = dict(os.environ, SCVI_COMPILED_KERNELS="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@requires_kernel
@pytest.mark.parametrize("wanted", [("mu",), ("theta",), ("pi",), ("mu", "pi"), ("theta", "pi")])
@pytest.mark.parametrize("weights", ["broadcast", "dense", "transposed"])
def test_backward_for_some_inputs_and_any_gradient_layout(wanted, weights, monkeypatch):
    """Only the requested gradients, whatever the layout of the incoming gradient: as the torch path."""
    x, mu, theta, pi = _inputs(n=40, g=23, big_counts=True)
    inputs = {"mu": mu.detach(), "theta": theta.detach(), "pi": pi.detach()}
    for name in wanted:
        inputs[name].requires_grad_()
    if weights == "broadcast":
        grad = torch.randn(40, 1).expand(40, 23)
    elif weights == "dense":
        grad = torch.randn(40, 23)
    else:
        grad = torch.randn(23, 40).t()
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(fused, "ENABLED", enabled)
        out = log_zinb_positive(x, inputs["mu"], inputs["theta"], inputs["pi"])
        results.append(torch.autograd.grad(out, [inputs[name] for name in wanted], grad))
    for name, g_kernel, g_torch in zip(wanted, *results):
        assert g_kernel.shape == inputs[name].shape
        torch.testing.assert_close(g_kernel, g_torch, rtol=1e-4, atol=1e-4 * g_torch.abs().max(), msg=name)
