"""The fused decoder loss: the decoder's last layers, softmax, library size and NB / ZINB
log-likelihood in one autograd step.

``fused_nb_family_from_hidden`` against a float64 reference, and ``VAE.forward`` with and without
the fused path (same losses, same gradients, the same fallbacks as the usual path).
"""
import numpy as np
import pytest
import torch

from scvi.models import LDVAE, VAE
from scvi.models import _fused_likelihood as fused
from scvi.models import _fused_step as fused_step
from scvi.models.log_likelihood import log_nb_positive, log_zinb_positive

requires_kernel = pytest.mark.skipif(
    fused._kernels is None,
    reason="compiled kernels unavailable: scvi._kernels not built (no C compiler) or SCVI_COMPILED_KERNELS=0",
)

N_HIDDEN = 16


@pytest.fixture(autouse=True)
def module_by_module_training_step(monkeypatch):
    """These tests exercise the decoder's fused loss inside the module-by-module forward pass,
    which the whole fused training step (tests/models/test_fused_step.py) otherwise bypasses."""
    monkeypatch.setattr(fused_step, "ENABLED", False)


def _linear(weight, bias) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def _decoder_outputs(n=48, g=53, seed=0, zero_inflated=True):
    """Counts (zeros, small counts, counts beyond the kernel's tables), the decoder's hidden layer,
    its two last layers (logits spanning a wide range: one gene far below the others), log library
    sizes and inverse dispersions."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(0, 1, size=(n, N_HIDDEN))
    scale_bias = rng.normal(0, 1, size=g)
    scale_bias[5] = -60.0  # softmax underflows to 0 for this gene
    scale_layer = _linear(rng.normal(0, 0.5, size=(g, N_HIDDEN)), scale_bias)
    dropout_layer = _linear(rng.normal(0, 0.7, size=(g, N_HIDDEN)), rng.normal(0, 1, size=g)) if zero_inflated else None
    logits = hidden @ scale_layer.weight.detach().double().numpy().T + scale_bias
    library = rng.normal(7, 1.5, size=(n, 1))
    theta = np.exp(rng.uniform(-4, 6, size=g))
    mu = np.exp(library) * np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    counts = rng.poisson(rng.gamma(np.minimum(theta, 50.0), np.minimum(mu, 500.0) / np.minimum(theta, 50.0)))
    counts[rng.random((n, g)) < 0.3] = 0
    counts[1, :3] = [300, 5000, 70000]
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32).requires_grad_()  # noqa: E731
    x = torch.tensor(counts, dtype=torch.float32)
    return x, as_tensor(hidden), scale_layer, dropout_layer, as_tensor(library), as_tensor(theta)


def _differentiable(hidden, scale_layer, dropout_layer, library, theta):
    layers = [scale_layer] if dropout_layer is None else [scale_layer, dropout_layer]
    return [hidden, *[p for layer in layers for p in (layer.weight, layer.bias)], library, theta]


def _reference(x, hidden, scale_layer, dropout_layer, library, theta):
    """The unfused formula in float64: ``-loss`` of the decoder outputs, per cell, and its inputs."""
    differentiable = _differentiable(hidden, scale_layer, dropout_layer, library, theta)
    inputs = [t.detach().double().requires_grad_() for t in differentiable]
    hidden64, weight, bias, *rest = inputs
    library64, theta64 = rest[-2:]
    mu = torch.exp(library64) * torch.softmax(hidden64 @ weight.T + bias, dim=-1)
    x = x.double()
    if dropout_layer is None:
        value = log_nb_positive(x, mu, theta64)
    else:
        value = log_zinb_positive(x, mu, theta64, hidden64 @ rest[0].T + rest[1])
    return value.sum(-1), inputs


@requires_kernel
@pytest.mark.parametrize("zero_inflated", [True, False])
def test_values_and_gradients_match_the_float64_formula(zero_inflated):
    x, hidden, scale_layer, dropout_layer, library, theta = data = _decoder_outputs(zero_inflated=zero_inflated)
    weights = torch.randn(x.shape[0], generator=torch.Generator().manual_seed(1))
    out = fused.fused_nb_family_from_hidden(*data, 1e-8)
    assert out.shape == (x.shape[0],) and out.dtype == torch.float32
    reference, reference_inputs = _reference(*data)
    # each cell sums ~50 terms up to ~1e5 (the large counts): float32 rounding of those terms
    np.testing.assert_allclose(out.detach().double().numpy(), reference.detach().numpy(), rtol=2e-6, atol=5e-3)

    inputs = _differentiable(hidden, scale_layer, dropout_layer, library, theta)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    reference_grads = torch.autograd.grad((reference * weights.double()).sum(), reference_inputs)
    names = ["hidden", "scale weight", "scale bias", "dropout weight", "dropout bias"][: len(inputs) - 2]
    for name, grad, expected in zip(names + ["library", "theta"], grads, reference_grads):
        assert grad.shape == expected.shape, name
        scale = expected.abs().max().item()
        error = (grad.double() - expected).abs().max().item()
        assert error <= 1e-5 * scale + 1e-5, f"d/d{name}: error {error:.2e} for values up to {scale:.2e}"


@requires_kernel
def test_inputs_are_left_unchanged_and_backward_can_run_twice():
    """The kernel writes its derivatives over the layers' products, never over an input, and the
    backward pass only reads what it saved (so a retained graph gives the same gradients again)."""
    data = _decoder_outputs()
    inputs = _differentiable(*data[1:])
    before = [t.detach().clone() for t in inputs]
    out = fused.fused_nb_family_from_hidden(*data, 1e-8)
    first = torch.autograd.grad(out.sum(), inputs, retain_graph=True)
    second = torch.autograd.grad(out.sum(), inputs)
    for original, tensor in zip(before, inputs):
        assert torch.equal(original, tensor.detach())
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@requires_kernel
def test_only_the_requested_gradients_are_computed():
    x, hidden, scale_layer, dropout_layer, library, theta = _decoder_outputs()
    hidden = hidden.detach()
    for layer in (scale_layer, dropout_layer):
        layer.bias.requires_grad_(False)
    out = fused.fused_nb_family_from_hidden(x, hidden, scale_layer, dropout_layer, library, theta, 1e-8)
    out.sum().backward()
    assert scale_layer.weight.grad is not None and dropout_layer.weight.grad is not None
    assert scale_layer.bias.grad is None and dropout_layer.bias.grad is None
    assert library.grad is not None and theta.grad is not None


@requires_kernel
def test_without_gradients_only_values_are_computed():
    data = _decoder_outputs()
    with torch.no_grad():
        out = fused.fused_nb_family_from_hidden(*data, 1e-8)
    reference, _ = _reference(*data)
    assert not out.requires_grad
    np.testing.assert_allclose(out.double().numpy(), reference.detach().numpy(), rtol=2e-6, atol=5e-3)


@requires_kernel
def test_non_finite_logits_give_non_finite_cells_only():
    x, hidden, scale_layer, dropout_layer, library, theta = _decoder_outputs()
    with torch.no_grad():
        hidden[3, 7] = float("nan")
        hidden[4, 2] = float("inf")
        out = fused.fused_nb_family_from_hidden(x, hidden, scale_layer, dropout_layer, library, theta, 1e-8)
    assert torch.isnan(out[3]) and torch.isnan(out[4])
    assert torch.isfinite(out[[0, 1, 2, 5]]).all()


@requires_kernel
@pytest.mark.parametrize(
    "case",
    ["float64", "fractional counts", "negative counts", "counts need gradients", "3-d", "library shape", "layer width"],
)
def test_inputs_outside_the_kernel_return_none(case):
    x, hidden, scale_layer, dropout_layer, library, theta = _decoder_outputs()
    if case == "float64":
        x, hidden = x.double(), hidden.double()
    elif case == "fractional counts":
        x = x + 0.5
    elif case == "negative counts":
        x = x.clone()
        x[0, 0] = -1.0
    elif case == "counts need gradients":
        x = x.clone().requires_grad_()
    elif case == "3-d":
        x, hidden = x[None], hidden[None]
    elif case == "library shape":
        library = library.view(-1)
    elif case == "layer width":
        dropout_layer = torch.nn.Linear(N_HIDDEN, x.shape[1] + 1)
    assert fused.fused_nb_family_from_hidden(x, hidden, scale_layer, dropout_layer, library, theta, 1e-8) is None


# ------------------------------------------------------------------------------------------------
# VAE.forward


def _minibatch(n=64, g=40, seed=0, fractional=False):
    rng = np.random.default_rng(seed)
    x = rng.negative_binomial(2, 0.3, size=(n, g)).astype(np.float32)
    if fractional:
        x = x / 3.0
    x = torch.tensor(x)
    batch = torch.tensor(rng.integers(0, 2, size=(n, 1)))
    local_mean = torch.full((n, 1), float(np.log(x.sum(1).mean())))
    return x, local_mean, torch.ones(n, 1), batch


def _loss_and_grads(model, minibatch, fused_path: bool, monkeypatch):
    with monkeypatch.context() as patch:
        if not fused_path:
            patch.setattr(VAE, "_fused_loss_applies", lambda self: False)
        torch.manual_seed(0)
        model.zero_grad()
        reconst, kl_local, _ = model(*minibatch)
        (reconst + kl_local).mean().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return reconst.detach(), kl_local.detach(), grads


@pytest.fixture
def fused_calls(record_calls):
    """Whether each call of the fused decoder loss applied (returned a value)."""
    return record_calls(fused, "fused_nb_family_from_hidden", record=lambda args, result: result is not None)


@requires_kernel
@pytest.mark.parametrize("reconstruction_loss", ["zinb", "nb"])
def test_vae_loss_and_gradients_are_those_of_the_usual_path(reconstruction_loss, monkeypatch, fused_calls):
    model = VAE(40, n_batch=2, reconstruction_loss=reconstruction_loss)
    minibatch = _minibatch()
    reconst, kl, grads = _loss_and_grads(model, minibatch, True, monkeypatch)
    assert fused_calls == [True]
    reconst_ref, kl_ref, grads_ref = _loss_and_grads(model, minibatch, False, monkeypatch)
    assert fused_calls == [True]  # the usual path does not call it
    torch.testing.assert_close(reconst, reconst_ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(kl, kl_ref)  # same encoder, same noise
    assert grads.keys() == grads_ref.keys() and "px_r" in grads
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-4, atol=1e-5, msg=name)


@requires_kernel
def test_vae_eval_loss_matches_without_gradients(monkeypatch, fused_calls):
    model = VAE(40, n_batch=2).eval()
    minibatch = _minibatch()
    with torch.no_grad():
        torch.manual_seed(0)  # the same latent draws
        fast = model(*minibatch)[0]
        with monkeypatch.context() as patch:
            patch.setattr(VAE, "_fused_loss_applies", lambda self: False)
            torch.manual_seed(0)
            usual = model(*minibatch)[0]
    assert fused_calls == [True]
    torch.testing.assert_close(fast, usual, rtol=1e-5, atol=1e-3)


@requires_kernel
def test_normalised_data_fall_back_inside_the_fused_path(monkeypatch, fused_calls):
    model = VAE(40, n_batch=2)
    minibatch = _minibatch(fractional=True)
    reconst, _, grads = _loss_and_grads(model, minibatch, True, monkeypatch)
    assert fused_calls == [False]
    reconst_ref, _, grads_ref = _loss_and_grads(model, minibatch, False, monkeypatch)
    torch.testing.assert_close(reconst, reconst_ref)
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], msg=name)


class _MyLossVAE(VAE):
    """A subclass with its own reconstruction loss (as users write them)."""

    def get_reconstruction_loss(self, x, px_rate, px_r, px_dropout, **kwargs):
        return ((x - px_rate) ** 2).sum(dim=-1)


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: _MyLossVAE(40, n_batch=2),
        lambda: VAE(40, n_batch=2, dispersion="gene-batch"),
        lambda: VAE(40, n_batch=2, reconstruction_loss="poisson"),
        lambda: LDVAE(40, n_batch=2),
    ],
    ids=["overridden loss", "gene-batch dispersion", "poisson", "linear decoder"],
)
def test_models_outside_the_fused_path_keep_their_own(make_model, fused_calls):
    model = make_model()
    assert not model._fused_loss_applies()
    reconst, _, _ = model(*_minibatch())
    assert fused_calls == []
    if isinstance(model, _MyLossVAE):
        outputs = model.inference(_minibatch()[0], _minibatch()[3])
        assert reconst.shape == (64,) and torch.isfinite(reconst).all()
        assert outputs["px_rate"].shape == (64, 40)


def test_decoder_logits_give_the_decoder_outputs():
    model = VAE(40, n_batch=2).eval()
    x, _, _, batch = _minibatch()
    z = torch.randn(64, 10)
    library = torch.randn(64, 1) + 5
    px_scale, px_r, px_rate, px_dropout = model.decoder("gene", z, library, batch)
    logits, px_r_from_logits, dropout_from_logits = model.decoder.decode_logits("gene", z, batch)
    assert px_r is None and px_r_from_logits is None
    torch.testing.assert_close(torch.softmax(logits, -1), px_scale)
    torch.testing.assert_close(model.decoder.scale_and_rate(logits, library), (px_scale, px_rate))
    torch.testing.assert_close(dropout_from_logits, px_dropout)
