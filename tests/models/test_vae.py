"""VAE / LDVAE: every option runs with legacy shapes, training on planted data works, save/load, seeding."""
import io
import itertools

import numpy as np
import pytest
import torch

from scvi.dataset._planted import planted_counts
from scvi.models import LDVAE, VAE
from scvi.models._base import LossOutput, kl_normal

N_GENES = 40


def _minibatch(n=16, n_genes=N_GENES, n_batch=2, n_labels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(n, n_genes, generator=g) * 5)
    batch = torch.randint(0, max(n_batch, 1), (n, 1), generator=g)
    labels = torch.randint(0, max(n_labels, 1), (n, 1), generator=g)
    log_lib = torch.log(x.sum(1, keepdim=True))
    return x, torch.full_like(log_lib, float(log_lib.mean())), torch.full_like(log_lib, 1.0), batch, labels


OPTIONS = list(
    itertools.product(["gene", "gene-batch", "gene-label", "gene-cell"], ["zinb", "nb", "poisson"], ["normal", "ln"])
)


@pytest.mark.parametrize("dispersion, reconstruction_loss, latent_distribution", OPTIONS)
def test_every_option_runs_forward_and_backward(dispersion, reconstruction_loss, latent_distribution):
    vae = VAE(
        N_GENES,
        n_batch=2,
        n_labels=3,
        n_hidden=16,
        n_latent=4,
        n_layers=2,
        dispersion=dispersion,
        reconstruction_loss=reconstruction_loss,
        latent_distribution=latent_distribution,
    )
    x, lm, lv, batch, labels = _minibatch()
    out = vae(x, lm, lv, batch_index=batch, y=labels)
    assert isinstance(out, LossOutput)
    reconst_loss, kl_local, kl_global = out  # legacy unpacking
    assert reconst_loss.shape == kl_local.shape == (16,)
    assert kl_global == 0.0
    assert torch.isfinite(reconst_loss).all() and (kl_local >= 0).all()
    (reconst_loss + kl_local).mean().backward()
    grads = [p.grad for p in vae.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_forward_terms_follow_scvi_0_6():
    """reconst_loss = -log p(x|z,l) + KL(q(l)||p(l)) and kl_local = KL(q(z)||p(z)), as in the original."""
    torch.manual_seed(0)
    vae = VAE(N_GENES, n_batch=2).eval()
    x, lm, lv, batch, labels = _minibatch()
    torch.manual_seed(1)
    reconst_loss, kl_local, _ = vae(x, lm, lv, batch)
    torch.manual_seed(1)
    out = vae.inference(x, batch)
    expected_reconst = vae.get_reconstruction_loss(x, out["px_rate"], out["px_r"], out["px_dropout"])
    expected_reconst = expected_reconst + kl_normal(out["ql_m"], out["ql_v"], lm, lv).sum(1)
    torch.testing.assert_close(reconst_loss, expected_reconst)
    normal = torch.distributions.Normal
    expected_kl = torch.distributions.kl_divergence(
        normal(out["qz_m"], out["qz_v"].sqrt()), normal(torch.zeros_like(out["qz_m"]), 1.0)
    ).sum(1)
    torch.testing.assert_close(kl_local, expected_kl)


@pytest.mark.parametrize("n_samples", [1, 3])
def test_inference_keys_and_shapes(n_samples):
    vae = VAE(N_GENES, n_batch=2, n_latent=5, dispersion="gene-batch")
    x, _, _, batch, labels = _minibatch()
    out = vae.inference(x, batch, labels, n_samples=n_samples)
    assert set(out) == {"px_scale", "px_r", "px_rate", "px_dropout", "qz_m", "qz_v", "z", "ql_m", "ql_v", "library"}
    lead = (n_samples,) if n_samples > 1 else ()
    for key in ("px_scale", "px_rate", "px_dropout"):
        assert out[key].shape == lead + (16, N_GENES)
    for key in ("qz_m", "qz_v", "z"):
        assert out[key].shape == lead + (16, 5)
    for key in ("ql_m", "ql_v", "library"):
        assert out[key].shape == lead + (16, 1)
    assert out["px_r"].shape == (16, N_GENES)
    torch.testing.assert_close(out["px_r"], torch.exp(vae.px_r).t()[batch.view(-1)])
    assert VAE(N_GENES).inference(x)["px_r"].shape == (N_GENES,)


def test_legacy_accessors():
    torch.manual_seed(0)
    vae = VAE(N_GENES, n_batch=2, n_latent=5).eval()
    x, _, _, batch, labels = _minibatch()
    (latent,) = vae.get_latents(x)
    assert latent.shape == (16, 5)
    mean = vae.sample_from_posterior_z(x, give_mean=True)
    torch.testing.assert_close(mean, vae.z_encoder(torch.log1p(x))[0])
    assert not torch.equal(vae.sample_from_posterior_z(x), mean)
    assert vae.sample_from_posterior_l(x).shape == (16, 1)
    scale = vae.get_sample_scale(x, batch)
    torch.testing.assert_close(scale.sum(-1), torch.ones(16))
    assert vae.get_sample_rate(x, batch, n_samples=4).shape == (4, 16, N_GENES)
    ln = VAE(N_GENES, latent_distribution="ln").eval()
    ln_mean = ln.sample_from_posterior_z(x, give_mean=True, n_samples=200)
    torch.testing.assert_close(ln_mean.sum(-1), torch.ones(16))


def test_transform_batch_changes_outputs_only_through_the_batch():
    torch.manual_seed(0)
    vae = VAE(N_GENES, n_batch=3).eval()
    x, _, _, batch, _ = _minibatch(n_batch=3)
    with torch.no_grad():
        torch.manual_seed(3)
        as_batch_1 = vae.get_sample_scale(x, batch, transform_batch=1)
        torch.manual_seed(3)
        all_in_batch_1 = vae.get_sample_scale(x, torch.ones_like(batch))
        torch.manual_seed(3)
        as_batch_2 = vae.get_sample_scale(x, batch, transform_batch=2)
        torch.manual_seed(3)
        encoder_draws = vae.inference(x, batch, transform_batch=1)["z"]
        torch.manual_seed(3)
        encoder_draws_2 = vae.inference(x, batch, transform_batch=2)["z"]
    torch.testing.assert_close(as_batch_1, all_in_batch_1)
    assert not torch.allclose(as_batch_1, as_batch_2)
    torch.testing.assert_close(encoder_draws, encoder_draws_2)  # the encoder never sees the batch
    with pytest.raises(ValueError, match="transform_batch"):
        vae.get_sample_scale(x, batch, transform_batch=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"dispersion": "genes"},
            "`dispersion` must be one of 'gene', 'gene-batch', 'gene-label', 'gene-cell'; got 'genes'",
        ),
        ({"reconstruction_loss": "zip"}, "`reconstruction_loss` must be one of 'zinb', 'nb', 'poisson'; got 'zip'"),
        ({"latent_distribution": "lognormal"}, "`latent_distribution` must be one of 'normal', 'ln'"),
        ({"dispersion": "gene-batch", "n_batch": 0}, "needs `n_batch` >= 1"),
        ({"dispersion": "gene-label", "n_labels": 0}, "needs `n_labels` >= 1"),
    ],
)
def test_bad_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE(N_GENES, **kwargs)


def test_missing_covariates_raise_value_error():
    x, lm, lv, batch, labels = _minibatch()
    with pytest.raises(ValueError, match="needs labels `y`"):
        VAE(N_GENES, n_labels=3, dispersion="gene-label")(x, lm, lv, batch)
    with pytest.raises(ValueError, match="covariate is None"):
        VAE(N_GENES, n_batch=2)(x, lm, lv)
    with pytest.raises(ValueError, match="LDVAE does not decode a dispersion"):
        LDVAE(N_GENES, dispersion="gene-cell")


def _planted(n_cells=360, n_genes=N_GENES):
    data = planted_counts(n_cells=n_cells, n_genes=n_genes, n_clusters=3, n_batches=2, n_de_genes=8, lfc_scale=3.0,
                          mean_library=800.0, random_state=0)
    x = torch.tensor(data.X)
    log_lib = torch.log(x.sum(1, keepdim=True))
    lm = torch.full_like(log_lib, float(log_lib.mean()))
    lv = torch.full_like(log_lib, float(log_lib.var()))
    return x, lm, lv, torch.tensor(data.batch_indices).view(-1, 1), data.labels


def _train(model, x, lm, lv, batch, n_steps=250, seed=0):
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(n_steps):
        idx = torch.randint(0, x.size(0), (64,), generator=generator)
        reconst_loss, kl_local, kl_global = model(x[idx], lm[idx], lv[idx], batch[idx])
        loss = torch.mean(reconst_loss + kl_local) + kl_global
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _elbo(model, x, lm, lv, batch):
    torch.manual_seed(0)
    with torch.no_grad():
        reconst_loss, kl_local, _ = model(x, lm, lv, batch)
    return float((reconst_loss + kl_local).mean())


def _knn_accuracy(latent, labels, k=10):
    dist = torch.cdist(latent, latent)
    dist.fill_diagonal_(float("inf"))
    neighbours = dist.topk(k, largest=False).indices
    votes = torch.tensor(labels)[neighbours]
    predicted = torch.mode(votes, dim=1).values.numpy()
    return float(np.mean(predicted == labels))


@pytest.mark.parametrize("model_cls", [VAE, LDVAE])
def test_training_lowers_the_loss_and_separates_planted_clusters(model_cls):
    x, lm, lv, batch, labels = _planted()
    torch.manual_seed(0)
    model = model_cls(N_GENES, n_batch=2, n_hidden=32, n_latent=4).eval()
    before = _elbo(model, x, lm, lv, batch)
    latent_before = model.sample_from_posterior_z(x, give_mean=True).detach()
    _train(model, x, lm, lv, batch)
    after = _elbo(model, x, lm, lv, batch)
    assert after < before - 0.2 * abs(before)
    latent = model.sample_from_posterior_z(x, give_mean=True).detach()
    accuracy = _knn_accuracy(latent, labels)
    assert accuracy > 0.9, accuracy  # chance is 1/3
    assert accuracy > _knn_accuracy(latent_before, labels)
    if model_cls is LDVAE:
        loadings = model.get_loadings()
        assert loadings.shape == (N_GENES, 4)
        # the 24 planted DE genes carry larger loadings than the null genes (centred per latent
        # dimension: the softmax is invariant to a shift of all genes)
        strength = np.linalg.norm(loadings - loadings.mean(0), axis=1)
        auc = np.mean(strength[:24, None] > strength[None, 24:])
        assert auc > 0.75, auc


def test_state_dict_round_trip_gives_identical_outputs():
    x, lm, lv, batch, _ = _planted(n_cells=64)
    torch.manual_seed(0)
    vae = _train(VAE(N_GENES, n_batch=2, n_hidden=16), x, lm, lv, batch, n_steps=5)
    buffer = io.BytesIO()
    torch.save(vae.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)
    clone = VAE(N_GENES, n_batch=2, n_hidden=16)
    clone.load_state_dict(torch.load(buffer))
    clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone.sample_from_posterior_z(x, give_mean=True),
                                   vae.sample_from_posterior_z(x, give_mean=True), rtol=0, atol=0)
        torch.manual_seed(7)
        expected = vae(x, lm, lv, batch)
        torch.manual_seed(7)
        got = clone(x, lm, lv, batch)
    for a, b in zip(got[:2], expected[:2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_seeded_runs_are_reproducible():
    x, lm, lv, batch, _ = _planted(n_cells=64)

    def run():
        torch.manual_seed(42)
        model = _train(VAE(N_GENES, n_batch=2, n_hidden=16), x, lm, lv, batch, n_steps=10, seed=42)
        return model.sample_from_posterior_z(x, give_mean=True).detach()

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)
