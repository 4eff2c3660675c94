"""JVAE (gimVI's joint model): gene mappings, per-dataset likelihoods and library handling."""
import numpy as np
import pytest
import torch

from scvi.models import JVAE
from scvi.models._base import kl_normal
from scvi.models.distributions import NegativeBinomial

SPATIAL_GENES = np.array([4, 0, 2])  # the spatial dataset's 3 genes, decoded at output positions 4, 0, 2


def _model(**kwargs):
    options = dict(n_latent=3, n_batch=2, dim_hidden_encoder=16, dim_hidden_decoder_shared=16)
    options.update(kwargs)
    return JVAE([6, 3], 6, [slice(None), SPATIAL_GENES], ["zinb", "nb"], [True, False], **options)


def _counts(n, genes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.rand(n, genes, generator=generator) * 6, generator=generator) + 1


@pytest.fixture
def model():
    return _model().eval()


def test_decode_normalises_the_scale_over_the_genes_of_the_dataset(model):
    z, library = torch.randn(5, 3), torch.full((5, 1), 2.0)
    batch_index = torch.ones(5, 1, dtype=torch.long)
    for mode, genes in ((0, np.arange(6)), (1, SPATIAL_GENES)):
        px_scale, px_r, px_rate, px_dropout = model.decode(z, mode, library, batch_index)
        assert px_scale.shape == px_r.shape == px_rate.shape == px_dropout.shape == (5, 6)
        torch.testing.assert_close(px_scale[:, genes].sum(1), torch.ones(5))
        torch.testing.assert_close(px_rate, px_scale * np.exp(2.0))
    scale_seq = model.decode(z, 0, library, batch_index)[0]
    scale_spatial = model.decode(z, 1, library, batch_index)[0]
    # same decoder, only the normalisation differs: the ratios between genes are kept
    torch.testing.assert_close(scale_seq / scale_seq[:, :1], scale_spatial / scale_spatial[:, :1])


def test_spatial_loss_is_on_its_own_genes_with_the_observed_library(model):
    x = _counts(4, 3)
    batch_index = torch.ones(4, 1, dtype=torch.long)
    torch.manual_seed(0)
    reconst_loss, kl_divergence, kl_global = model(x, torch.zeros(4, 1), torch.ones(4, 1), batch_index, mode=1)
    torch.manual_seed(0)
    qz_m, qz_v, z, ql_m, ql_v, library = model.encode(x, 1)
    assert ql_m is None and ql_v is None
    torch.testing.assert_close(library, torch.log(x.sum(1, keepdim=True)))
    _, px_r, px_rate, _ = model.decode(z, 1, library, batch_index)
    expected = -NegativeBinomial(mu=px_rate[:, SPATIAL_GENES], theta=px_r[:, SPATIAL_GENES]).log_prob(x).sum(-1)
    torch.testing.assert_close(reconst_loss, expected)
    torch.testing.assert_close(kl_divergence, kl_normal(qz_m, qz_v).sum(1))  # no library KL
    assert kl_global == 0.0


def test_sequencing_loss_includes_the_library_kl(model):
    x = _counts(4, 6)
    batch_index = torch.zeros(4, 1, dtype=torch.long)
    torch.manual_seed(0)
    _, kl_divergence, _ = model(x, torch.zeros(4, 1), torch.ones(4, 1), batch_index, mode=0)
    torch.manual_seed(0)
    qz_m, qz_v, _, ql_m, ql_v, _ = model.encode(x, 0)
    expected = kl_normal(qz_m, qz_v).sum(1) + kl_normal(ql_m, ql_v, torch.zeros(4, 1), torch.ones(4, 1)).sum(1)
    torch.testing.assert_close(kl_divergence, expected)


def test_posterior_draws_and_imputation(model):
    x = _counts(5, 3)
    batch_index = torch.ones(5, 1, dtype=torch.long)
    z_mean = model.sample_from_posterior_z(x, mode=1, deterministic=True)
    torch.testing.assert_close(z_mean, model.encode(x, 1)[0])
    assert model.sample_from_posterior_z(x, mode=1).shape == (5, 3)
    torch.testing.assert_close(model.sample_from_posterior_l(x, mode=1), torch.log(x.sum(1, keepdim=True)))
    scale = model.sample_scale(x, 1, batch_index, deterministic=True)
    torch.testing.assert_close(scale[:, SPATIAL_GENES].sum(1), torch.ones(5))
    rate = model.sample_rate(x, 1, batch_index, deterministic=True)
    torch.testing.assert_close(rate, scale * x.sum(1, keepdim=True))  # observed library
    # decoded as the sequencing data: normalised over all genes
    scale_seq = model.sample_scale(x, 1, batch_index, deterministic=True, decode_mode=0)
    torch.testing.assert_close(scale_seq.sum(1), torch.ones(5))
    x_seq = _counts(5, 6)
    torch.manual_seed(1)
    rate_seq = model.get_sample_rate(x_seq, batch_index)  # a draw of z and l, as in scVI 0.6
    torch.manual_seed(1)
    torch.testing.assert_close(rate_seq, model.sample_rate(x_seq, 0, batch_index))


@pytest.mark.parametrize("dispersion", ["gene", "gene-batch", "gene-label", "gene-cell"])
def test_every_dispersion_trains(dispersion):
    torch.manual_seed(0)
    model = _model(dispersion=dispersion, n_labels=2)
    x = _counts(16, 6)
    batch_index = torch.zeros(16, 1, dtype=torch.long)
    labels = torch.arange(16).remainder(2).view(-1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        reconst_loss, kl_divergence, _ = model(x, torch.zeros(16, 1), torch.ones(16, 1), batch_index, labels, mode=0)
        loss = (reconst_loss + kl_divergence).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_single_dataset_needs_no_mode():
    model = JVAE([4], 4, [slice(None)], ["poisson"], [True], n_batch=1).eval()
    x = _counts(3, 4)
    reconst_loss, _, _ = model(x, torch.zeros(3, 1), torch.ones(3, 1), torch.zeros(3, 1, dtype=torch.long))
    assert reconst_loss.shape == (3,)
    assert model.sample_from_posterior_z(x).shape == (3, 10)


def test_mode_is_required_and_checked(model):
    x = _counts(3, 6)
    with pytest.raises(ValueError, match="`mode` .* must be given when the model has 2 datasets"):
        model(x, torch.zeros(3, 1), torch.ones(3, 1), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`mode` must be a dataset index in \[0, 2\); got 2"):
        model.sample_from_posterior_z(x, mode=2)
    with pytest.raises(ValueError, match=r"`decode_mode` must be a dataset index"):
        model.sample_scale(x, 0, torch.zeros(3, 1, dtype=torch.long), decode_mode=-1)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (([6, 3], 6, [slice(None)], ["zinb", "nb"], [True, False]), {"n_batch": 2}, ValueError,
         r"`indices_mappings` must have one entry per dataset \(2\); got 1"),
        (([6, 3], 6, [slice(None), [0, 1, 2]], ["zinb", "gaussian"], [True, False]), {"n_batch": 2}, ValueError,
         "`reconstruction_losses` must be one of 'zinb', 'nb', 'poisson'; got 'gaussian'"),
        (([6, 3], 6, [slice(None), [0, 1]], ["zinb", "nb"], [True, False]), {"n_batch": 2}, ValueError,
         r"`indices_mappings\[1\]` maps 2 genes but `dim_input_list\[1\]` is 3"),
        (([6, 3], 6, [slice(None), [0, 1, 6]], ["zinb", "nb"], [True, False]), {"n_batch": 2}, ValueError,
         r"`indices_mappings\[1\]` must hold positions in \[0, total_genes=6\)"),
        (([6, 3], 6, [slice(None), [0.0, 1.0, 2.0]], ["zinb", "nb"], [True, False]), {"n_batch": 2}, TypeError,
         "must be a slice or a 1-d array of integer gene positions"),
        (([6, 3], 6, [slice(None), [0, 1, 2]], ["zinb", "nb"], [True, False]), {}, ValueError,
         "dispersion='gene-batch' needs `n_batch` >= 1"),
        (([6, 3], 6, [slice(None), [0, 1, 2]], ["zinb", "nb"], [True, False]), {"dispersion": "cell"}, ValueError,
         "`dispersion` must be one of 'gene', 'gene-batch', 'gene-label', 'gene-cell'; got 'cell'"),
    ],
)
def test_bad_arguments_raise(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        JVAE(*args, **kwargs)
