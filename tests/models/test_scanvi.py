"""SCANVI: loss terms, classification (label prior, label groups), latents, validation, save/load."""
import numpy as np
import pytest
import torch

from scvi.models import SCANVI
from scvi.models.scanvi import Classifier, Decoder, Encoder, VAE, broadcast_labels  # noqa: F401 - legacy re-exports

N_GENES, N_LABELS = 30, 3


def _minibatch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.poisson(3.0, size=(n, N_GENES)), dtype=torch.float32)
    local_mean = torch.full((n, 1), float(np.log(3.0 * N_GENES)))
    local_var = torch.ones(n, 1)
    labels = torch.as_tensor(rng.integers(0, N_LABELS, size=(n, 1)))
    return x, local_mean, local_var, labels


def test_forward_labelled_and_unlabelled_shapes():
    model = SCANVI(N_GENES, n_labels=N_LABELS)
    x, lm, lv, y = _minibatch()
    for labels in (y, None):
        reconst, kl_local, kl_global = model(x, lm, lv, y=labels)
        assert reconst.shape == (16,) and kl_local.shape == (16,)
        assert kl_global == 0.0
        assert torch.isfinite(reconst).all() and torch.isfinite(kl_local).all()


def test_y_prior_enters_the_unlabelled_kl_term_exactly():
    """kl_local(prior A) - kl_local(prior B) = sum_y q(y | z1) (log B_y - log A_y), all else equal."""
    model = SCANVI(N_GENES, n_labels=N_LABELS).eval()
    x, lm, lv, _ = _minibatch()
    prior_a = torch.tensor([[0.2, 0.3, 0.5]])
    prior_b = torch.tensor([[0.6, 0.3, 0.1]])
    with torch.no_grad():
        model.y_prior.copy_(prior_a)
        torch.manual_seed(1)
        kl_a = model(x, lm, lv)[1]
        model.y_prior.copy_(prior_b)
        torch.manual_seed(1)
        kl_b = model(x, lm, lv)[1]
        torch.manual_seed(1)
        q = model.classifier(model._inference(x)["z"])
    expected = (q * (prior_b.log() - prior_a.log())).sum(dim=1)
    torch.testing.assert_close(kl_a - kl_b, expected, rtol=1e-4, atol=1e-4)


def test_y_prior_is_normalised_and_validated():
    model = SCANVI(N_GENES, n_labels=N_LABELS, y_prior=torch.tensor([[1.0, 1.0, 2.0]]))
    torch.testing.assert_close(model.y_prior.data, torch.tensor([[0.25, 0.25, 0.5]]))
    assert not model.y_prior.requires_grad
    with pytest.raises(ValueError, match="`y_prior` must have n_labels=3 entries"):
        SCANVI(N_GENES, n_labels=N_LABELS, y_prior=[0.5, 0.5])
    with pytest.raises(ValueError, match="strictly positive"):
        SCANVI(N_GENES, n_labels=N_LABELS, y_prior=[0.5, 0.5, 0.0])


def test_classify_returns_probabilities():
    model = SCANVI(N_GENES, n_labels=N_LABELS).eval()
    x = _minibatch()[0]
    probs = model.classify(x)
    assert probs.shape == (16, N_LABELS)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(16))
    # deterministic in eval mode: the posterior mean of z1 is classified
    torch.testing.assert_close(model.classify(x), probs)


def test_classify_reads_a_draw_of_z1_in_training_mode():
    """As scVI 0.6, training classifies a draw of z1 (the same encoder output as in eval mode, plus noise)."""
    model = SCANVI(N_GENES, n_labels=N_LABELS, dropout_rate=0.0)
    model.classifier.eval()  # isolate the latent draw from the classifier's own dropout
    model.z_encoder.eval()  # batch norm with running statistics in both calls
    x = _minibatch()[0]
    model.train(False)
    mean_probs = model.classify(x)
    model.training = True  # only the SCANVI flag: classify draws z1
    torch.manual_seed(0)
    first = model.classify(x)
    torch.manual_seed(1)
    second = model.classify(x)
    assert not torch.allclose(first, second)
    torch.manual_seed(0)
    torch.testing.assert_close(model.classify(x), first)
    # averaged over draws, the probabilities are close to those of the mean
    torch.manual_seed(2)
    averaged = torch.stack([model.classify(x) for _ in range(200)]).mean(0)
    assert (averaged - mean_probs).abs().max() < 0.1


def test_classify_with_logits_classifier_still_returns_probabilities():
    model = SCANVI(N_GENES, n_labels=N_LABELS, classifier_parameters={"logits": True, "n_hidden": 16}).eval()
    probs = model.classify(_minibatch()[0])
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(16))
    assert model.classifier.classifier[-1].out_features == N_LABELS
    assert model.classifier.classifier[0].fc_layers[0][0].out_features == 16


def test_labels_groups_classify_hierarchically():
    """p(label) = p(group | z1) * p(label | z1) renormalised within the group."""
    groups = [0, 0, 1]
    model = SCANVI(N_GENES, n_labels=N_LABELS, labels_groups=groups, use_labels_groups=True).eval()
    x = _minibatch()[0]
    with torch.no_grad():
        probs = model.classify(x)
        z = model.z_encoder(torch.log1p(x))[0]
        p_group = model.classifier_groups(z)
        p_label = model.classifier(z)
    torch.testing.assert_close(probs[:, :2].sum(1), p_group[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs[:, 2], p_group[:, 1], rtol=1e-5, atol=1e-6)
    # within group 0, the label classifier's odds are kept
    torch.testing.assert_close(probs[:, 0] / probs[:, 1], p_label[:, 0] / p_label[:, 1], rtol=1e-4, atol=1e-6)
    # without use_labels_groups, the groups are stored but classify is the flat classifier
    flat = SCANVI(N_GENES, n_labels=N_LABELS, labels_groups=groups).eval()
    assert not hasattr(flat, "classifier_groups")
    np.testing.assert_array_equal(flat.labels_groups, groups)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_labels": 0}, "needs `n_labels` >= 1"),
        ({"n_labels": 3, "use_labels_groups": True}, "needs `labels_groups`"),
        ({"n_labels": 3, "labels_groups": [0, 1]}, "integer group to each of the 3 labels"),
        ({"n_labels": 3, "labels_groups": [0, 2, 2], "use_labels_groups": True}, "number the groups 0, 1"),
        ({"n_labels": 3, "classifier_parameters": {"n_hiden": 3}}, "unknown `classifier_parameters`"),
        ({"n_labels": 3, "dispersion": "genes"}, "`dispersion` must be one of"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SCANVI(N_GENES, **kwargs)


def test_get_latents_gives_z1_and_the_mean_of_z2_in_eval_mode():
    model = SCANVI(N_GENES, n_labels=N_LABELS, n_latent=4).eval()
    x, _, _, y = _minibatch()
    z1, z2 = model.get_latents(x, y)
    assert z1.shape == z2.shape == (16, 4)
    torch.testing.assert_close(z2, model.encoder_z2_z1(z1, y)[0])


def test_state_dict_round_trip_gives_identical_outputs(tmp_path):
    model = SCANVI(N_GENES, n_batch=2, n_labels=N_LABELS, labels_groups=[0, 1, 1], use_labels_groups=True).eval()
    torch.save(model.state_dict(), tmp_path / "scanvi.pt")
    other = SCANVI(N_GENES, n_batch=2, n_labels=N_LABELS, labels_groups=[0, 1, 1], use_labels_groups=True).eval()
    other.load_state_dict(torch.load(tmp_path / "scanvi.pt", weights_only=True))
    x = _minibatch()[0]
    torch.testing.assert_close(other.classify(x), model.classify(x))
    torch.testing.assert_close(
        other.sample_from_posterior_z(x, give_mean=True), model.sample_from_posterior_z(x, give_mean=True)
    )


def test_labelled_loss_decreases_with_training():
    torch.manual_seed(0)
    model = SCANVI(N_GENES, n_labels=N_LABELS)
    x, lm, lv, y = _minibatch(n=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss(labels):
        reconst, kl_local, _ = model(x, lm, lv, y=labels)
        return (reconst + kl_local).mean()

    with torch.no_grad():
        before = (loss(y).item(), loss(None).item())
    for _ in range(30):
        optimizer.zero_grad()
        (loss(y) + loss(None)).backward()
        optimizer.step()
    with torch.no_grad():
        after = (loss(y).item(), loss(None).item())
    assert after[0] < before[0] and after[1] < before[1]
