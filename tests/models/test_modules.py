"""Network blocks: shapes, covariate injection, legacy state_dict layout, option validation."""
import pytest
import torch

from scvi.models.modules import (
    Decoder,
    DecoderSCVI,
    Encoder,
    FCLayers,
    LinearDecoderSCVI,
    MultiDecoder,
    MultiEncoder,
    reparameterize_gaussian,
)
from scvi.models.utils import broadcast_labels, enumerate_discrete, iterate, one_hot


def test_fclayers_legacy_layout_and_covariate_width():
    layers = FCLayers(20, 8, n_cat_list=[3, 1, 2], n_layers=2, n_hidden=16)
    keys = set(layers.state_dict())
    assert "fc_layers.Layer 0.0.weight" in keys and "fc_layers.Layer 1.1.running_mean" in keys
    # covariates with a single category are ignored; the others are injected in every layer
    assert layers.fc_layers[0][0].in_features == 20 + 3 + 2
    assert layers.fc_layers[1][0].in_features == 16 + 3 + 2
    x = torch.randn(5, 20)
    cats = (torch.tensor([[0], [1], [2], [0], [1]]), torch.zeros(5, 1), torch.tensor([[0], [1], [0], [1], [0]]))
    assert layers(x, *cats).shape == (5, 8)


def test_fclayers_output_depends_on_covariate_only_through_its_one_hot():
    torch.manual_seed(0)
    layers = FCLayers(4, 3, n_cat_list=[3], dropout_rate=0.0, use_batch_norm=False).eval()
    x = torch.randn(6, 4)
    index = torch.tensor([[0], [2], [1], [1], [0], [2]])
    by_index = layers(x, index)
    by_one_hot = layers(x, one_hot(index, 3))
    torch.testing.assert_close(by_index, by_one_hot)
    assert not torch.allclose(layers(x, torch.zeros_like(index)), by_index)


def test_fclayers_three_dimensional_input():
    layers = FCLayers(4, 3, n_cat_list=[2]).eval()
    x = torch.randn(2, 5, 4)
    cat = torch.tensor([[0], [1], [1], [0], [1]])
    out = layers(x, cat)
    assert out.shape == (2, 5, 3)
    torch.testing.assert_close(out[1], layers(x[1], cat))
    layers.train()
    assert layers(x, cat).shape == (2, 5, 3)


def test_fclayers_errors():
    layers = FCLayers(4, 3, n_cat_list=[2, 3])
    with pytest.raises(ValueError, match="expects 2 categorical covariate"):
        layers(torch.randn(3, 4), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="covariate is None"):
        layers(torch.randn(3, 4), None, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="n_layers"):
        FCLayers(4, 3, n_layers=-1)
    with pytest.raises(ValueError, match="dropout_rate"):
        FCLayers(4, 3, dropout_rate=1.5)


@pytest.mark.parametrize("distribution", ["normal", "ln"])
def test_encoder(distribution):
    torch.manual_seed(0)
    encoder = Encoder(12, 4, n_cat_list=[2], n_layers=2, distribution=distribution)
    q_m, q_v, z = encoder(torch.randn(7, 12), torch.zeros(7, 1))
    assert q_m.shape == q_v.shape == z.shape == (7, 4)
    assert (q_v > 0).all()
    if distribution == "ln":
        torch.testing.assert_close(z.sum(-1), torch.ones(7))
        assert (z > 0).all()


def test_encoder_rejects_unknown_distribution():
    with pytest.raises(ValueError, match="`distribution` must be one of 'normal', 'ln'; got 'lognormal'"):
        Encoder(5, 2, distribution="lognormal")


def test_reparameterize_gaussian_moments_and_gradient():
    torch.manual_seed(0)
    mu = torch.full((20000, 2), 3.0, requires_grad=True)
    var = torch.full((20000, 2), 4.0)
    draws = reparameterize_gaussian(mu, var)
    assert abs(draws.mean().item() - 3.0) < 0.05 and abs(draws.var().item() - 4.0) < 0.1
    draws.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))


@pytest.mark.parametrize("dispersion", ["gene", "gene-cell"])
def test_decoder_scvi(dispersion):
    decoder = DecoderSCVI(4, 30, n_cat_list=[3], n_layers=2, n_hidden=16)
    z, library = torch.randn(6, 4), torch.full((6, 1), 2.0)
    px_scale, px_r, px_rate, px_dropout = decoder(dispersion, z, library, torch.zeros(6, 1))
    torch.testing.assert_close(px_scale.sum(-1), torch.ones(6))
    torch.testing.assert_close(px_rate, px_scale * torch.exp(library))
    assert px_dropout.shape == (6, 30)
    assert (px_r is None) == (dispersion != "gene-cell")


def test_linear_decoder_and_gaussian_decoder():
    px_scale, px_r, px_rate, px_dropout = LinearDecoderSCVI(4, 30, n_cat_list=[2])(
        "gene", torch.randn(6, 4), torch.zeros(6, 1), torch.ones(6, 1)
    )
    assert px_r is None and px_scale.shape == px_dropout.shape == (6, 30)
    torch.testing.assert_close(px_scale.sum(-1), torch.ones(6))
    p_m, p_v = Decoder(4, 9, n_layers=2)(torch.randn(6, 4))
    assert p_m.shape == p_v.shape == (6, 9) and (p_v > 0).all()


def test_multi_encoder_and_decoder():
    encoder = MultiEncoder(2, [10, 7], 3, n_hidden=16, n_cat_list=[2])
    for head, n_in in enumerate([10, 7]):
        q_m, q_v, z = encoder(torch.randn(5, n_in), head, torch.zeros(5, 1))
        assert q_m.shape == q_v.shape == z.shape == (5, 3)
    with pytest.raises(ValueError, match="n_input_list"):
        MultiEncoder(3, [10, 7], 3)
    for n_cond, n_shared in [(1, 1), (0, 1), (1, 0)]:
        decoder = MultiDecoder(3, 12, n_layers_conditioned=n_cond, n_layers_shared=n_shared, n_cat_list=[2])
        z, library, batch = torch.randn(5, 3), torch.zeros(5, 1), torch.ones(5, 1)
        px_scale, px_r, px_rate, px_dropout = decoder(z, 0, library, "gene-cell", batch)
        assert px_scale.shape == px_r.shape == px_rate.shape == px_dropout.shape == (5, 12)


def test_one_hot_and_label_helpers():
    index = torch.tensor([[2], [0], [1]])
    expected = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])
    torch.testing.assert_close(one_hot(index, 3), expected)
    torch.testing.assert_close(one_hot(index.float(), 3), expected)
    assert one_hot(index, 3).dtype == torch.float32
    ys = enumerate_discrete(torch.zeros(2, 5), 3)
    torch.testing.assert_close(ys.argmax(1), torch.tensor([0, 0, 1, 1, 2, 2]))
    x, lib = torch.randn(2, 4), torch.randn(2, 1)
    ys, xs, libs, none = broadcast_labels(None, x, lib, None, n_broadcast=3)
    assert ys.shape == (6, 3) and xs.shape == (6, 4) and libs.shape == (6, 1) and none is None
    torch.testing.assert_close(xs[4:], x)
    ys, xs = broadcast_labels(torch.tensor([[1], [0]]), x, n_broadcast=3)
    torch.testing.assert_close(ys, torch.tensor([[0.0, 1, 0], [1, 0, 0]]))
    assert xs is x
    with pytest.raises(ValueError, match="at least one reference"):
        broadcast_labels(None, n_broadcast=2)
    assert iterate([1, (2, None)], lambda v: v * 10) == [10, (20, None)]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_dropout_drops_the_right_fraction_and_is_seeded(compiled, dtype, monkeypatch):
    from scvi.models import modules
    from scvi.models.modules import Dropout

    if compiled and modules.kernels is None:
        pytest.skip("compiled kernels unavailable: scvi._kernels not built (no C compiler) or SCVI_COMPILED_KERNELS=0")
    if not compiled:
        monkeypatch.setattr(modules, "kernels", None)
    layer = Dropout(p=0.3)
    x = torch.ones(401, 499, dtype=dtype, requires_grad=True)  # not a multiple of 4 elements
    torch.manual_seed(0)
    out = layer(x)
    assert out.dtype == dtype
    kept = out != 0
    assert abs(kept.double().mean().item() - 0.7) < 0.01
    # every position of a 64-bit word (4 uniforms) and the last elements are dropped alike
    for lane in range(4):
        assert abs(kept.view(-1)[lane::4].double().mean().item() - 0.7) < 0.015
    assert 0.5 < kept.view(-1)[-400:].double().mean().item() < 0.9
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 65536 / (65536 - round(0.3 * 65536))))
    assert abs(out.mean().item() - 1.0) < 0.02  # unbiased, as nn.Dropout
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # gradient flows through the kept entries only
    torch.manual_seed(0)
    torch.testing.assert_close(layer(x), out)  # reproducible under torch.manual_seed
    assert not torch.equal(layer(x), out)  # and a new mask at the next call
    layer.eval()
    assert layer(x) is x or torch.equal(layer(x), x)
    assert isinstance(layer, torch.nn.Dropout)


def test_minibatch_one_hot_is_reused_only_for_the_same_unmodified_indices():
    from scvi.models.modules import _one_hot_of_minibatch

    index = torch.tensor([[0], [2], [1]])
    first = _one_hot_of_minibatch(index, 3)
    assert _one_hot_of_minibatch(index, 3) is first  # the next layer reuses it
    torch.testing.assert_close(first, torch.eye(3)[[0, 2, 1]])
    assert _one_hot_of_minibatch(index, 4).shape == (3, 4)  # another number of categories
    index[0, 0] = 1  # modified in place: encoded again
    torch.testing.assert_close(_one_hot_of_minibatch(index, 3), torch.eye(3)[[1, 2, 1]])
    other = torch.tensor([[0], [2], [1]])  # equal values, another tensor
    assert _one_hot_of_minibatch(other, 3) is not _one_hot_of_minibatch(index, 3)
    with torch.inference_mode():
        inside = _one_hot_of_minibatch(index, 3)
    assert _one_hot_of_minibatch(index, 3) is not inside


def test_minibatch_one_hot_of_an_inference_tensor():
    """Indices made in inference mode have no version counter: encoded every time, not cached."""
    from scvi.models.modules import _one_hot_of_minibatch

    with torch.inference_mode():
        index = torch.tensor([[1], [0]])
        first = _one_hot_of_minibatch(index, 2)
        torch.testing.assert_close(first, torch.eye(2)[[1, 0]])
        assert _one_hot_of_minibatch(index, 2) is not first
