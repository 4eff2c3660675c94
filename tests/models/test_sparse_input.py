"""Linear layers that skip the zeros of a mostly-zero input (the encoders' log counts)."""
import numpy as np
import pytest
import torch
from torch import nn

from scvi.models import VAE
from scvi.models import _fused_step as fused_step
from scvi.models import _sparse_input as sparse_input
from scvi.models.modules import FCLayers, Linear

requires_kernel = pytest.mark.skipif(
    sparse_input._kernels is None,
    reason="compiled kernels unavailable: scvi._kernels not built (no C compiler) or SCVI_COMPILED_KERNELS=0",
)


def _log_counts(n=96, n_in=700, density=0.08, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, size=(n, n_in)) * (rng.random((n, n_in)) < density)
    counts[0] = 0  # an empty cell
    counts[:, 3] = 0  # an unexpressed gene
    return torch.tensor(np.log1p(counts), dtype=torch.float32)


@pytest.fixture
def kernel_calls(record_calls):
    return record_calls(sparse_input._SparseInputLinear, "apply")


@requires_kernel
@pytest.mark.parametrize("n_out, bias", [(128, True), (100, True), (7, False)])
def test_values_and_gradients_match_the_dense_product(n_out, bias, kernel_calls):
    x = _log_counts()
    layer = Linear(x.shape[1], n_out, bias=bias)
    weights = torch.randn(x.shape[0], n_out, generator=torch.Generator().manual_seed(1))
    out = layer(x)
    assert len(kernel_calls) == 1
    (out * weights).sum().backward()
    expected = nn.functional.linear(x.double(), layer.weight.double(), None if not bias else layer.bias.double())
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    weight_grad = weights.double().t() @ x.double()
    torch.testing.assert_close(layer.weight.grad.double(), weight_grad, rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(layer.bias.grad.double(), weights.double().sum(0), rtol=1e-5, atol=1e-5)


@requires_kernel
@pytest.mark.parametrize("case", ["all zeros", "one cell", "one non-zero"])
def test_empty_and_tiny_minibatches(case, kernel_calls):
    """No non-zeros at all (the kernels get empty buffers), a single cell, a single non-zero."""
    x = {"all zeros": torch.zeros(50, 300), "one cell": _log_counts(n=1, n_in=300), "one non-zero": torch.zeros(9, 300)}[case]
    if case == "one non-zero":
        x[4, 123] = 2.5
    layer = Linear(300, 20)
    weights = torch.randn(x.shape[0], 20)
    out = layer(x)
    (out * weights).sum().backward()
    assert len(kernel_calls) == 1
    torch.testing.assert_close(out, nn.functional.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.weight.grad, weights.t() @ x, rtol=1e-5, atol=1e-6)


@requires_kernel
def test_structure_is_built_once_for_the_encoders_of_a_minibatch(monkeypatch):
    builds = []
    original = sparse_input._build_structure
    monkeypatch.setattr(sparse_input, "_build_structure", lambda x: builds.append(1) or original(x))
    x = _log_counts()
    first, second = Linear(x.shape[1], 16), Linear(x.shape[1], 1)
    first(x), second(x)
    assert len(builds) == 1
    x.mul_(2.0)  # modified in place: built again, and the products see the new values
    torch.testing.assert_close(first(x), nn.functional.linear(x, first.weight, first.bias), rtol=1e-5, atol=1e-5)
    assert len(builds) == 2


@requires_kernel
@pytest.mark.parametrize(
    "case", ["dense input", "narrow input", "input needs gradients", "float64", "3-d", "non-contiguous"]
)
def test_inputs_outside_the_kernel_take_the_dense_product(case, kernel_calls):
    x = _log_counts()
    layer = Linear(x.shape[1], 16)
    if case == "dense input":
        x = x + 1.0
    elif case == "narrow input":
        x, layer = x[:, :100].contiguous(), Linear(100, 16)
    elif case == "input needs gradients":
        x = x.clone().requires_grad_()
    elif case == "float64":
        x, layer = x.double(), layer.double()
    elif case == "3-d":
        x = x[None]
    elif case == "non-contiguous":
        x = torch.cat([x, x], dim=1)[:, ::2]
    out = layer(x)
    assert kernel_calls == []
    torch.testing.assert_close(out, nn.functional.linear(x, layer.weight, layer.bias))


@requires_kernel
def test_results_do_not_depend_on_the_number_of_threads():
    x = _log_counts(n=300)
    layer = Linear(x.shape[1], 128)
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            layer.zero_grad()
            out = layer(x)
            out.pow(2).sum().backward()
            results.append((out.detach().clone(), layer.weight.grad.clone()))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@requires_kernel
def test_nan_inputs_propagate():
    x = _log_counts()
    x[5, 10] = float("nan")
    out = Linear(x.shape[1], 8)(x)
    assert torch.isnan(out[5]).all() and torch.isfinite(out[6]).all()


def test_fc_layers_keep_the_legacy_state_dict():
    layers = FCLayers(300, 16, n_cat_list=[3])
    assert isinstance(layers.fc_layers[0][0], nn.Linear)
    assert list(layers.state_dict())[:2] == ["fc_layers.Layer 0.0.weight", "fc_layers.Layer 0.0.bias"]
    plain = nn.Linear(303, 16)
    layers.fc_layers[0][0].load_state_dict(plain.state_dict())
    torch.testing.assert_close(layers.fc_layers[0][0].weight, plain.weight)


@requires_kernel
def test_vae_training_on_sparse_counts_matches_the_dense_products(monkeypatch, kernel_calls):
    """Same losses and gradients with and without the kernels (both encoders take them), in the
    module-by-module forward pass (tests/models/test_fused_step.py covers the fused step's)."""
    monkeypatch.setattr(fused_step, "ENABLED", False)
    rng = np.random.default_rng(0)
    x = torch.tensor((rng.poisson(3.0, (64, 400)) * (rng.random((64, 400)) < 0.05)).astype(np.float32))
    minibatch = (x, torch.full((64, 1), 3.0), torch.ones(64, 1), torch.tensor(rng.integers(0, 2, (64, 1))))
    model = VAE(400, n_batch=2)

    def loss_and_grads(enabled):
        with monkeypatch.context() as patch:
            patch.setattr(sparse_input, "ENABLED", enabled)
            torch.manual_seed(0)
            model.zero_grad()
            reconst, kl, _ = model(*minibatch)
            (reconst + kl).mean().backward()
        return reconst.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    reconst, grads = loss_and_grads(True)
    assert len(kernel_calls) == 2  # the z and library encoders
    reconst_dense, grads_dense = loss_and_grads(False)
    torch.testing.assert_close(reconst, reconst_dense, rtol=1e-5, atol=1e-3)
    for name in grads:
        torch.testing.assert_close(grads[name], grads_dense[name], rtol=1e-4, atol=1e-5, msg=name)
