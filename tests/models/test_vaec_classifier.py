"""VAEC (semi-supervised M2 model) and the Classifier."""
import pytest
import torch

from scvi.models import VAEC, Classifier
from scvi.models._base import kl_normal

N_GENES, N_LABELS = 30, 3


def _minibatch(n=12):
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.rand(n, N_GENES, generator=g) * 4)
    labels = torch.randint(0, N_LABELS, (n, 1), generator=g)
    batch = torch.randint(0, 2, (n, 1), generator=g)
    return x, torch.full((n, 1), 4.0), torch.ones(n, 1), batch, labels


def test_classifier_probabilities_and_logits():
    x = torch.randn(5, 8)
    probs = Classifier(8, n_hidden=16, n_labels=4).eval()(x)
    assert probs.shape == (5, 4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    logits = Classifier(8, n_hidden=16, n_labels=4, logits=True).eval()(x)
    assert not torch.allclose(logits.sum(-1), torch.ones(5))


@pytest.mark.parametrize("labelled", [True, False])
def test_vaec_forward_shapes_and_backward(labelled):
    vaec = VAEC(N_GENES, n_batch=2, n_labels=N_LABELS, n_hidden=16)
    x, lm, lv, batch, labels = _minibatch()
    reconst_loss, kl_local, kl_global = vaec(x, lm, lv, batch, labels if labelled else None)
    assert reconst_loss.shape == kl_local.shape == (12,)
    assert kl_global == 0.0
    (reconst_loss + kl_local).mean().backward()
    assert vaec.classifier.classifier[1].weight.grad is not None or labelled


def test_vaec_unlabelled_loss_is_the_classifier_weighted_average_of_labelled_losses():
    torch.manual_seed(0)
    vaec = VAEC(N_GENES, n_batch=2, n_labels=N_LABELS, n_hidden=16).eval()
    x, lm, lv, batch, _ = _minibatch()
    # deterministic encoders: the "draws" are the means
    for encoder in (vaec.z_encoder, vaec.l_encoder):

        def encode_mean(x_, *cats, enc=encoder):
            q_m, q_v, _ = type(enc).encode(enc, x_, *cats)
            return q_m, q_v, q_m

        encoder.encode = encode_mean
    vaec.l_encoder.forward = vaec.l_encoder.encode
    with torch.no_grad():
        reconst, kl, _ = vaec(x, lm, lv, batch, None)
        probs = vaec.classify(x)
        per_label = [vaec(x, lm, lv, batch, torch.full_like(batch, k)) for k in range(N_LABELS)]
        expected_reconst = sum(probs[:, k] * per_label[k][0] for k in range(N_LABELS))
        torch.testing.assert_close(reconst, expected_reconst)
        ql_m, ql_v, _ = vaec.l_encoder(torch.log1p(x))
        kl_l = kl_normal(ql_m, ql_v, lm, lv).sum(1)
        kl_z = sum(probs[:, k] * (per_label[k][1] - kl_l) for k in range(N_LABELS))
        prior = vaec.y_prior.expand_as(probs)
        kl_y = (probs * (probs.log() - prior.log())).sum(1)
        torch.testing.assert_close(kl, kl_z + kl_y + kl_l)


def test_vaec_validation():
    with pytest.raises(ValueError, match="`y_prior` must have 3 entries"):
        VAEC(N_GENES, 0, 3, y_prior=torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="n_labels"):
        VAEC(N_GENES, 0, 0)
    prior = VAEC(N_GENES, 0, 4).y_prior
    assert prior.shape == (1, 4) and not prior.requires_grad
    torch.testing.assert_close(prior.sum(), torch.tensor(1.0))
