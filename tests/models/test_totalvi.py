"""TOTALVI and its encoder/decoder: options, legacy outputs, the protein mask, learning, persistence."""
import itertools

import numpy as np
import pytest
import torch

from scvi.models import TOTALVI
from scvi.models.modules import DecoderTOTALVI, EncoderTOTALVI

N_CELLS, N_GENES, N_PROTEINS = 40, 30, 6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine is shared: one torch thread avoids oversubscription stalls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def minibatch():
    gen = torch.Generator().manual_seed(1)
    x = torch.poisson(torch.rand(N_CELLS, N_GENES, generator=gen) * 6, generator=gen)
    y = torch.poisson(torch.rand(N_CELLS, N_PROTEINS, generator=gen) * 60, generator=gen)
    batch = (torch.arange(N_CELLS) % 2).view(-1, 1)
    labels = (torch.arange(N_CELLS) % 3).view(-1, 1)
    log_lib = torch.log(x.sum(1, keepdim=True))
    return x, y, torch.full_like(log_lib, float(log_lib.mean())), torch.ones_like(log_lib), batch, labels


def small_model(**kwargs):
    defaults = dict(n_batch=2, n_labels=3, n_hidden=16, n_latent=4)
    defaults.update(kwargs)
    return TOTALVI(N_GENES, N_PROTEINS, **defaults)


OPTIONS = [
    (gene, protein, *likelihood_and_latent)
    for gene, protein in itertools.product(
        ["gene", "gene-batch", "gene-label"], ["protein", "protein-batch", "protein-label"]
    )
    for likelihood_and_latent in (("nb", "ln"), ("zinb", "normal"))
]


@pytest.mark.parametrize("gene_dispersion, protein_dispersion, loss, latent", OPTIONS)
def test_every_option_gives_finite_losses_and_gradients(minibatch, gene_dispersion, protein_dispersion, loss, latent):
    model = small_model(
        gene_dispersion=gene_dispersion,
        protein_dispersion=protein_dispersion,
        reconstruction_loss_gene=loss,
        latent_distribution=latent,
    )
    losses = model(*minibatch)
    assert len(losses) == 5
    for term in losses:
        assert term.shape == (N_CELLS,)
        assert torch.isfinite(term).all()
    sum(t.mean() for t in losses).backward()
    assert torch.isfinite(model.px_r.grad).all() and model.px_r.grad.abs().sum() > 0
    assert torch.isfinite(model.py_r.grad).all() and model.py_r.grad.abs().sum() > 0


def test_losses_match_the_legacy_definitions(minibatch):
    from torch.distributions import Normal, kl_divergence

    x, y, lm, lv, batch, labels = minibatch
    model = small_model().eval()
    torch.manual_seed(7)  # same latent draws in forward and in inference below
    reconst_gene, reconst_protein, kl_z, kl_l, kl_back = losses = model(x, y, lm, lv, batch, labels)
    assert losses._fields == (
        "reconst_loss_gene", "reconst_loss_protein", "kl_div_z", "kl_div_l_gene", "kl_div_back_pro"
    )
    torch.manual_seed(7)
    out = model.inference(x, y, batch, labels)
    expected_z = kl_divergence(Normal(out["qz_m"], out["qz_v"].sqrt()), Normal(0, 1)).sum(1)
    expected_l = kl_divergence(Normal(out["ql_m"], out["ql_v"].sqrt()), Normal(lm, lv.sqrt())).sum(1)
    prior = out["back_mean_prior"]
    expected_back = kl_divergence(Normal(out["py_"]["back_alpha"], out["py_"]["back_beta"]), prior).sum(1)
    torch.testing.assert_close(kl_z, expected_z)
    torch.testing.assert_close(kl_l, expected_l)
    torch.testing.assert_close(kl_back, expected_back)
    assert (reconst_gene > 0).all() and (reconst_protein > 0).all()


def test_inference_keys_and_shapes(minibatch):
    x, y, _, _, batch, labels = minibatch
    model = small_model()
    out = model.inference(x, y, batch, labels)
    assert set(out["px_"]) == {"scale", "rate", "dropout", "r"}
    protein_keys = {"back_alpha", "back_beta", "rate_back", "fore_scale", "rate_fore", "mixing", "scale", "r"}
    assert protein_keys <= set(out["py_"])
    assert out["px_"]["rate"].shape == (N_CELLS, N_GENES)
    assert out["py_"]["rate_fore"].shape == (N_CELLS, N_PROTEINS)
    assert out["z"].shape == out["untran_z"].shape == (N_CELLS, 4)
    assert out["library_gene"].shape == (N_CELLS, 1)
    # foreground is at least the background; gene scales live on the simplex
    assert (out["py_"]["rate_fore"] >= out["py_"]["rate_back"]).all()
    torch.testing.assert_close(out["px_"]["scale"].sum(-1), torch.ones(N_CELLS))
    torch.testing.assert_close(out["z"].sum(-1), torch.ones(N_CELLS))  # logistic normal

    many = model.inference(x, y, batch, labels, n_samples=3)
    assert many["px_"]["rate"].shape == (3, N_CELLS, N_GENES)
    assert many["py_"]["mixing"].shape == (3, N_CELLS, N_PROTEINS)


def test_transform_batch_changes_only_the_decoded_batch(minibatch):
    x, y, _, _, batch, labels = minibatch
    model = small_model(dropout_rate_decoder=0.0).eval()
    torch.manual_seed(0)
    as_batch0 = model.get_sample_scale(x, y, batch, labels, transform_batch=0, sample_bern=False)
    torch.manual_seed(0)
    observed = model.get_sample_scale(x, y, batch, labels, sample_bern=False)
    in_batch0 = batch.view(-1) == 0
    torch.testing.assert_close(as_batch0[0][in_batch0], observed[0][in_batch0])
    assert not torch.allclose(as_batch0[0][~in_batch0], observed[0][~in_batch0])


def test_sample_scale_options(minibatch):
    x, y, _, _, batch, labels = minibatch
    model = small_model().eval()
    genes, proteins = model.get_sample_scale(x, y, batch, labels, normalize_pro=True, sample_bern=False)
    assert genes.shape == (N_CELLS, N_GENES) and proteins.shape == (N_CELLS, N_PROTEINS)
    torch.testing.assert_close(proteins.sum(-1), torch.ones(N_CELLS))
    _, with_eps = model.get_sample_scale(x, y, batch, labels, eps=0.5, normalize_pro=True, sample_bern=False)
    assert torch.all(with_eps >= 0.5)
    torch.manual_seed(3)
    _, sampled = model.get_sample_scale(x, y, batch, labels, sample_bern=True)
    assert (sampled == 0).any()  # background draws are removed
    torch.manual_seed(4)
    _, with_bg = model.get_sample_scale(x, y, batch, labels, sample_bern=False, include_bg=True)
    torch.manual_seed(4)
    _, without_bg = model.get_sample_scale(x, y, batch, labels, sample_bern=False)
    assert torch.all(with_bg > without_bg)


def test_posterior_accessors(minibatch):
    x, y, _, _, batch, labels = minibatch
    model = small_model().eval()
    z_mean = model.sample_from_posterior_z(x, y, batch, give_mean=True, n_samples=50)
    assert z_mean.shape == (N_CELLS, 4)
    torch.testing.assert_close(z_mean.sum(-1), torch.ones(N_CELLS))
    library = model.sample_from_posterior_l(x, y, batch)
    assert library.shape == (N_CELLS, 1) and (library > 0).all()
    px_r, py_r = model.get_sample_dispersion(x, y, batch, labels)
    assert px_r.shape == (N_GENES,) and py_r.shape == (N_PROTEINS,)
    assert model.get_sample_rate(x, y, batch, labels, n_samples=2).shape == (2, N_CELLS, N_GENES)
    normal = small_model(latent_distribution="normal").eval()
    qz_m = normal.encoder(torch.log1p(torch.cat([x, y], -1)), batch)[0]
    torch.testing.assert_close(normal.sample_from_posterior_z(x, y, batch, give_mean=True), qz_m)


def test_protein_batch_mask_removes_missing_protein_from_that_batch(minibatch):
    """Protein 0 is not measured in batch 1: batch-1 cells must not train its dispersion or its prior."""
    x, y, lm, lv, batch, labels = minibatch
    mask = [np.ones(N_PROTEINS, dtype=bool), np.r_[False, np.ones(N_PROTEINS - 1, dtype=bool)]]
    in_batch1 = batch.view(-1) == 1

    def grads(model, cells):
        model.zero_grad()
        losses = model(x[cells], y[cells], lm[cells], lv[cells], batch[cells], labels[cells])
        (losses.reconst_loss_protein + losses.kl_div_back_pro).sum().backward()
        return model.py_r.grad.clone(), model.background_pro_alpha.grad.clone()

    masked = small_model(protein_batch_mask=mask)
    py_r_grad, alpha_grad = grads(masked, in_batch1)
    assert py_r_grad[0] == 0 and alpha_grad[0, 1] == 0
    assert (py_r_grad[1:] != 0).all() and (alpha_grad[1:, 1] != 0).all()
    py_r_grad, alpha_grad = grads(masked, ~in_batch1)  # batch 0 measured it
    assert py_r_grad[0] != 0 and alpha_grad[0, 0] != 0

    unmasked = small_model()
    py_r_grad, alpha_grad = grads(unmasked, in_batch1)
    assert py_r_grad[0] != 0 and alpha_grad[0, 1] != 0


def test_reconstruction_loss_ignores_masked_counts(minibatch):
    x, y, _, _, batch, labels = minibatch
    model = small_model().eval()
    out = model.inference(x, y, batch, labels)
    mask = torch.ones(N_CELLS, N_PROTEINS)
    mask[:, 2] = 0
    y_changed = y.clone()
    y_changed[:, 2] += 1000
    _, base = model.get_reconstruction_loss(x, y, out["px_"], out["py_"], mask)
    _, changed = model.get_reconstruction_loss(x, y_changed, out["px_"], out["py_"], mask)
    torch.testing.assert_close(base, changed)
    _, unmasked = model.get_reconstruction_loss(x, y_changed, out["px_"], out["py_"])
    assert (unmasked > base).all()


def test_gradient_steps_lower_the_loss(minibatch):
    torch.manual_seed(0)
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    initial = None
    for _ in range(150):
        loss = sum(t.mean() for t in model(*minibatch))
        initial = float(loss.detach()) if initial is None else initial
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        final = float(sum(t.mean() for t in model(*minibatch)))
    assert final < 0.8 * initial


def test_state_dict_roundtrip_gives_identical_outputs(minibatch, tmp_path):
    x, y, _, _, batch, labels = minibatch
    model = small_model().eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    clone = small_model().eval()
    clone.load_state_dict(torch.load(tmp_path / "model.pt"))
    torch.manual_seed(5)
    first = model.inference(x, y, batch, labels)
    torch.manual_seed(5)
    second = clone.inference(x, y, batch, labels)
    torch.testing.assert_close(first["px_"]["rate"], second["px_"]["rate"])
    torch.testing.assert_close(first["py_"]["rate_fore"], second["py_"]["rate_fore"])


def test_legacy_parameter_names():
    keys = set(small_model().state_dict())
    for key in (
        "background_pro_alpha",
        "background_pro_log_beta",
        "px_r",
        "py_r",
        "encoder.encoder.fc_layers.Layer 0.0.weight",
        "encoder.z_encoder.0.weight",
        "encoder.l_gene_mean_encoder.weight",
        "decoder.px_scale_decoder.fc_layers.Layer 0.0.weight",
        "decoder.py_back_mean_log_alpha.fc_layers.Layer 0.0.weight",
        "decoder.py_fore_scale_decoder.fc_layers.Layer 0.0.weight",
        "decoder.py_background_decoder.fc_layers.Layer 0.0.weight",
    ):
        assert key in keys


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gene_dispersion="genes"), "gene_dispersion.*'gene', 'gene-batch', 'gene-label'"),
        (dict(protein_dispersion="protein-cell"), "protein_dispersion"),
        (dict(reconstruction_loss_gene="poisson"), "reconstruction_loss_gene.*'nb', 'zinb'"),
        (dict(latent_distribution="gaussian"), "latent_distribution"),
        (dict(n_batch=0, gene_dispersion="gene-batch"), "n_batch"),
        (dict(n_labels=0, protein_dispersion="protein-label"), "n_labels"),
        (dict(protein_batch_mask=[np.ones(N_PROTEINS, bool)]), "one mask per batch"),
        (dict(protein_batch_mask=[np.ones(2, bool)] * 2), "n_input_proteins"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model(**kwargs)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="n_input_proteins"):
        TOTALVI(10, 0)


def test_modules_on_their_own():
    encoder = EncoderTOTALVI(12, 3, n_cat_list=[2], n_layers=1, n_hidden=8, distribution="normal")
    data = torch.rand(5, 12)
    qz_m, qz_v, ql_m, ql_v, latent, untran = encoder(data, torch.zeros(5, 1, dtype=torch.long))
    assert qz_m.shape == qz_v.shape == latent["z"].shape == (5, 3)
    torch.testing.assert_close(latent["z"], untran["z"])  # identity transformation for "normal"
    torch.testing.assert_close(latent["l"], torch.exp(untran["l"]))
    with pytest.raises(ValueError, match="distribution"):
        EncoderTOTALVI(12, 3, distribution="lognormal")

    decoder = DecoderTOTALVI(3, 7, 4, n_hidden=8)
    px_, py_, log_back = decoder(latent["z"], latent["l"])
    assert px_["rate"].shape == (5, 7) and py_["rate_back"].shape == log_back.shape == (5, 4)
    torch.testing.assert_close(py_["scale"].sum(-1), torch.ones(5))
