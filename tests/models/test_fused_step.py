"""The fused training step of the default VAE (scvi.models._fused_step).

Against the module-by-module forward pass: the same per-cell losses, gradients, batch-norm
running statistics and random draws; the fallbacks where it does not apply; and its kernels
(batch norm + ReLU + dropout, small linear layers, Gaussian latent and KL) against torch.
"""
import copy

import numpy as np
import pytest
import torch

from scvi.dataset import GeneExpressionDataset
from scvi.inference import UnsupervisedTrainer
from scvi.models import VAE
from scvi.models.modules import Encoder
from scvi.models import _fused_step as fused_step
from scvi.models._sparse_input import MIN_INPUT_FEATURES

kernels = fused_step._kernels
requires_kernel = pytest.mark.skipif(
    not fused_step.ENABLED,
    reason="compiled kernels unavailable: scvi._kernels not built (no C compiler) or SCVI_COMPILED_KERNELS=0",
)
pytestmark = requires_kernel


def _minibatch(n=64, g=60, n_batch=2, seed=0, fractional=False, zeros=0.0):
    rng = np.random.default_rng(seed)
    x = rng.negative_binomial(2, 0.3, size=(n, g)).astype(np.float32)
    x[rng.random((n, g)) < zeros] = 0.0
    if fractional:
        x = x / 3.0
    batch = torch.tensor(rng.integers(0, max(n_batch, 1), size=(n, 1)))
    local_mean = torch.full((n, 1), float(np.log(x.sum(1).mean())))
    local_var = torch.tensor(rng.uniform(0.5, 2.0, size=(n, 1)), dtype=torch.float32)
    return torch.tensor(x), local_mean, local_var, batch


@pytest.fixture
def step_calls(record_calls):
    """Each call of the fused step: whether it applied."""
    return record_calls(fused_step, "vae_training_loss", record=lambda args, result: result is not None)


def _train_step(model, minibatch, fused: bool, kl_weight=0.7):
    """Per-cell losses, parameter gradients, buffers and the generator state after one step."""
    enabled = fused_step.ENABLED
    fused_step.ENABLED = fused
    try:
        torch.manual_seed(0)
        model.zero_grad()
        reconst, kl_local, _ = model(*minibatch)
        (reconst + kl_weight * kl_local).mean().backward()
    finally:
        fused_step.ENABLED = enabled
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return reconst.detach(), kl_local.detach(), grads, buffers, torch.get_rng_state()


def _assert_same_step(model, minibatch, step_calls):
    reference_model = copy.deepcopy(model)
    fast = _train_step(model, minibatch, True)
    assert step_calls[-1] is True
    usual = _train_step(reference_model, minibatch, False)
    torch.testing.assert_close(fast[0], usual[0], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(fast[1], usual[1], rtol=1e-5, atol=1e-5)
    assert fast[2].keys() == usual[2].keys() and "px_r" in fast[2]
    for name, grad in fast[2].items():
        reference = usual[2][name]
        if name.endswith("fc_layers.Layer 0.0.bias"):
            # before batch norm: the true gradient is zero, both paths give rounding noise
            assert grad.abs().max() < 1e-3 and reference.abs().max() < 1e-3
            continue
        # float32 rounding in sums over cells and genes: relative to the gradient's scale
        scale = reference.abs().max().item()
        assert (grad - reference).abs().max().item() <= 2e-5 * scale + 1e-7, name
    for name, buffer in fast[3].items():
        torch.testing.assert_close(buffer, usual[3][name], msg=name)
    assert torch.equal(fast[4], usual[4]), "the fused step drew different random numbers"


@pytest.mark.parametrize("reconstruction_loss", ["zinb", "nb"])
@pytest.mark.parametrize("n_batch", [0, 2, 3])
@pytest.mark.parametrize("log_variational", [True, False])
def test_same_losses_gradients_statistics_and_draws(reconstruction_loss, n_batch, log_variational, step_calls):
    torch.manual_seed(1)
    model = VAE(
        60, n_batch=n_batch, n_hidden=24, n_latent=5, reconstruction_loss=reconstruction_loss,
        log_variational=log_variational,
    )  # fmt: skip
    _assert_same_step(model, _minibatch(n_batch=n_batch), step_calls)
    assert model.z_encoder.encoder.fc_layers[0][1].num_batches_tracked.item() == 1


def test_mostly_zero_counts_take_the_sparse_first_layers(step_calls, record_calls):
    sparse_products = record_calls(fused_step, "sparse_linear_forward")
    torch.manual_seed(3)
    model = VAE(MIN_INPUT_FEATURES, n_batch=2, n_hidden=24)
    _assert_same_step(model, _minibatch(g=MIN_INPUT_FEATURES, zeros=0.9), step_calls)
    assert len(sparse_products) == 2  # both encoders' first layers


def test_a_second_step_and_other_dropout_rates(step_calls):
    torch.manual_seed(2)
    model = VAE(60, n_batch=2, n_hidden=32, n_latent=12, dropout_rate=0.3)
    _train_step(model, _minibatch(seed=3), True)
    _assert_same_step(model, _minibatch(seed=4, n=37), step_calls)


def test_seeded_training_follows_the_module_path():
    """Two epochs of UnsupervisedTrainer, seeded: the same parameters either way (up to rounding)."""
    rng = np.random.default_rng(0)
    x = rng.negative_binomial(2, 0.2, size=(300, 50)).astype(np.float32)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(x, batch_indices=rng.integers(0, 2, size=300))
    trained = []
    for fused in (True, False):
        enabled = fused_step.ENABLED
        fused_step.ENABLED = fused
        try:
            torch.manual_seed(0)
            model = VAE(dataset.nb_genes, n_batch=2, n_hidden=32)
            trainer = UnsupervisedTrainer(model, dataset, train_size=0.8, batch_size=64, show_progbar=False)
            trainer.train(n_epochs=2, lr=1e-3)
        finally:
            fused_step.ENABLED = enabled
        trained.append((model.state_dict(), trainer.test_set.elbo()))
    for name, value in trained[0][0].items():
        torch.testing.assert_close(value, trained[1][0][name], rtol=1e-3, atol=1e-4, msg=name)
    assert trained[0][1] == pytest.approx(trained[1][1], rel=1e-4)


def test_training_lowers_the_loss(step_calls):
    torch.manual_seed(0)
    model = VAE(60, n_batch=2, n_hidden=32)
    minibatch = _minibatch(n=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        reconst, kl, _ = model(*minibatch)
        loss = (reconst + kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(step_calls)
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])


def _fallback_cases():
    def frozen(model):
        model.z_encoder.mean_encoder.weight.requires_grad_(False)

    def dropout_in_eval_mode(model):
        model.z_encoder.encoder.fc_layers[0][3].eval()

    def custom_encoder(model):
        class ShiftedEncoder(Encoder):
            def encode(self, x, *cat_list):
                return super().encode(x + 1.0, *cat_list)

        encoder = ShiftedEncoder(model.z_encoder.encoder.fc_layers[0][0].in_features, model.n_latent, n_hidden=16)
        model.z_encoder = encoder

    def hooked(model):
        model.decoder.px_decoder.register_forward_hook(lambda *args: None)

    return {
        "eval mode": (dict(), lambda model: model.eval(), {}),
        "frozen parameter": (dict(), frozen, {}),
        "forward hook": (dict(), hooked, {}),
        "dropout in eval mode": (dict(), dropout_in_eval_mode, {}),
        "encoder subclass": (dict(), custom_encoder, {}),
        "two layers": (dict(n_layers=2), None, {}),
        "logistic normal latent": (dict(latent_distribution="ln"), None, {}),
        "gene-batch dispersion": (dict(dispersion="gene-batch"), None, {}),
        "poisson": (dict(reconstruction_loss="poisson"), None, {}),
        "fractional counts": (dict(), None, dict(fractional=True)),
    }


@pytest.mark.parametrize("case", list(_fallback_cases()))
def test_falls_back_where_it_does_not_apply(case, step_calls):
    model_kwargs, change, data_kwargs = _fallback_cases()[case]
    minibatch = _minibatch(**{"g": 60, **data_kwargs})
    torch.manual_seed(0)
    model = VAE(minibatch[0].shape[1], n_batch=2, n_hidden=16, **model_kwargs)
    if change is not None:
        change(model)
    model(*minibatch)
    assert step_calls == [False]


def test_no_gradient_mode_falls_back(step_calls):
    model = VAE(60, n_batch=2, n_hidden=16)
    with torch.no_grad():
        model(*_minibatch())
    assert step_calls == [False]


def test_batch_index_out_of_range_is_an_error():
    model = VAE(60, n_batch=2, n_hidden=16)
    x, local_mean, local_var, batch = _minibatch()
    batch[3] = 2
    with pytest.raises(ValueError, match=r"batch indices must be in \[0, 2\)"):
        model(x, local_mean, local_var, batch)


# ------------------------------------------------------------------------------------------------
# kernels against torch


def test_bn_relu_forward_and_backward_match_torch():
    torch.manual_seed(0)
    n, c = 37, 21
    a = torch.randn(n, c) * 3 + 1
    norm = torch.nn.BatchNorm1d(c, momentum=0.01, eps=1e-3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
        norm.running_var.fill_(2.0)
    mask = (torch.rand(n, c) > 0.2).float() / 0.8
    reference_norm = copy.deepcopy(norm)
    out, save_mean, save_invstd = fused_step._bn_relu(a, norm, norm.weight.detach(), norm.bias.detach(), mask)

    a_ref = a.clone().requires_grad_()
    expected = torch.relu(reference_norm(a_ref)) * mask
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(norm, name), getattr(reference_norm, name), msg=name)

    d_out = torch.randn(n, c)
    expected.backward(d_out)
    d_a, d_gamma, d_beta = fused_step._bn_relu_backward(
        d_out, out, mask, a, norm.weight.detach(), save_mean, save_invstd
    )
    torch.testing.assert_close(d_a, a_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(d_gamma, reference_norm.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(d_beta, reference_norm.bias.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_in, n_out, n_cat", [(24, 5, 0), (5, 24, 0), (7, 40, 3), (30, 1, 0)])
def test_small_linear_matches_torch(n_in, n_out, n_cat):
    torch.manual_seed(0)
    n = 19
    x = torch.randn(n, n_in)
    weight = torch.randn(n_out, n_in + n_cat)
    bias = torch.randn(n_out)
    cat = torch.randint(0, n_cat, (n,)) if n_cat else None
    out = fused_step._small_linear(x, weight, bias, cat)

    x_ref, weight_ref, bias_ref = (t.clone().requires_grad_() for t in (x, weight, bias))
    inputs = x_ref if cat is None else torch.cat((x_ref, torch.nn.functional.one_hot(cat, n_cat).float()), 1)
    expected = torch.nn.functional.linear(inputs, weight_ref, bias_ref)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-5)

    d_out = torch.randn(n, n_out)
    expected.backward(d_out)
    d_x = torch.full((n, n_in), 0.5)
    d_weight, d_bias = fused_step._small_linear_backward(d_out, x, weight, cat, d_x, accumulate=True)
    torch.testing.assert_close(d_weight, weight_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d_bias, bias_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d_x, x_ref.grad + 0.5, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_prior", [False, True])
def test_gaussian_latent_matches_torch(with_prior):
    torch.manual_seed(0)
    n, l = 23, 4
    q_m, log_v, noise = torch.randn(n, l), torch.randn(n, l), torch.randn(n, l)
    prior_mean = torch.randn(n) if with_prior else None
    prior_var = torch.rand(n) + 0.5 if with_prior else None
    q_v, z, kl = torch.empty(n, l), torch.empty(n, l), torch.empty(n)
    address = fused_step._address
    kernels.gaussian_latent(
        q_m.data_ptr(), log_v.data_ptr(), noise.data_ptr(), address(prior_mean), address(prior_var), n, l,
        q_v.data_ptr(), z.data_ptr(), kl.data_ptr(),
    )  # fmt: skip
    q_m_ref, log_v_ref = q_m.clone().requires_grad_(), log_v.clone().requires_grad_()
    q_v_ref = torch.exp(log_v_ref) + 1e-4
    z_ref = q_m_ref + q_v_ref.sqrt() * noise
    p_m = torch.zeros(n, 1) if prior_mean is None else prior_mean[:, None]
    p_v = torch.ones(n, 1) if prior_var is None else prior_var[:, None]
    kl_ref = (0.5 * (p_v.log() - q_v_ref.log() + (q_v_ref + (q_m_ref - p_m) ** 2) / p_v - 1)).sum(1)
    torch.testing.assert_close(q_v, q_v_ref.detach())
    torch.testing.assert_close(z, z_ref.detach())
    torch.testing.assert_close(kl, kl_ref.detach(), rtol=1e-5, atol=1e-5)

    d_z, d_kl = torch.randn(n, l), torch.randn(n)
    ((z_ref * d_z).sum() + (kl_ref * d_kl).sum()).backward()
    d_q_m, d_log_v = torch.empty(n, l), torch.empty(n, l)
    kernels.gaussian_latent_backward(
        q_m.data_ptr(), q_v.data_ptr(), noise.data_ptr(), address(prior_mean), address(prior_var), d_z.data_ptr(),
        d_kl.data_ptr(), n, l, d_q_m.data_ptr(), d_log_v.data_ptr(),
    )  # fmt: skip
    torch.testing.assert_close(d_q_m, q_m_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d_log_v, log_v_ref.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "call",
    [
        lambda: kernels.bn_relu_forward(0, 0, 4, 0, 0, 0, 0, 0, 0.1, 1e-3, 0, 0, 0, 0),
        lambda: kernels.bn_relu_backward(0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0),
        lambda: kernels.small_linear(0, 2, 5, 0, 4, 0, 0, 3, 0),
        lambda: kernels.small_linear_backward(0, 2, 0, 0, 5, 0, 5, 0, 0, 0, 0, False),
        lambda: kernels.gaussian_latent(0, 0, 0, 1, 0, 2, 3, 0, 0, 0),
        lambda: kernels.gaussian_latent_backward(0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0),
    ],
)
def test_kernels_reject_invalid_sizes(call):
    with pytest.raises(ValueError, match="invalid"):
        call()
