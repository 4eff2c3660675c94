"""Conformance of the count distributions: log_prob against scipy, moments against samples, parametrisations."""
import numpy as np
import pytest
import scipy.stats as st
import torch
from torch.distributions import Distribution

from scvi.models.distributions import NegativeBinomial, NegativeBinomialMixture, ZeroInflatedNegativeBinomial

MU = torch.tensor([[0.5, 4.0, 20.0], [2.0, 0.1, 7.0]])
THETA = torch.tensor([0.8, 3.0, 50.0])
ZI = torch.tensor([[-1.0, 0.0, 1.5], [-3.0, 2.0, -0.5]])


def _nb_scipy(x, mu, theta):
    theta = np.broadcast_to(theta, mu.shape)
    return st.nbinom.logpmf(x, theta, theta / (theta + mu))


def _distributions():
    return {
        "nb": NegativeBinomial(mu=MU, theta=THETA),
        "zinb": ZeroInflatedNegativeBinomial(mu=MU, theta=THETA, zi_logits=ZI),
        "mixture": NegativeBinomialMixture(mu1=MU, mu2=MU * 4, theta1=THETA, mixture_logits=ZI),
        "mixture-2-theta": NegativeBinomialMixture(
            mu1=MU, mu2=MU * 4, theta1=THETA, mixture_logits=ZI, theta2=THETA * 2
        ),
    }


@pytest.mark.parametrize("name", ["nb", "zinb", "mixture", "mixture-2-theta"])
def test_is_a_torch_distribution_with_broadcast_batch_shape(name):
    dist = _distributions()[name]
    assert isinstance(dist, Distribution)
    assert dist.batch_shape == MU.shape
    assert dist.mean.shape == MU.shape and dist.variance.shape == MU.shape
    assert dist.sample().shape == MU.shape
    assert dist.sample((4,)).shape == (4,) + tuple(MU.shape)


@pytest.mark.parametrize("name", ["nb", "zinb", "mixture", "mixture-2-theta"])
def test_moments_match_samples(name):
    torch.manual_seed(0)
    dist = _distributions()[name]
    samples = dist.sample((60000,))
    torch.testing.assert_close(samples.mean(0), dist.mean, rtol=0.05, atol=0.03)
    torch.testing.assert_close(samples.var(0), dist.variance, rtol=0.1, atol=0.05)


@pytest.mark.parametrize("name", ["nb", "zinb", "mixture", "mixture-2-theta"])
def test_log_prob_is_normalised_and_matches_its_mean(name):
    dist = _distributions()[name]
    counts = torch.arange(1500.0).view(-1, 1, 1).expand(1500, *MU.shape)
    probs = dist.log_prob(counts).double().exp()
    torch.testing.assert_close(probs.sum(0), torch.ones(MU.shape, dtype=torch.float64), rtol=0, atol=1e-4)
    torch.testing.assert_close(
        (probs * counts.double()).sum(0), dist.mean.double(), rtol=1e-3, atol=1e-3
    )


def test_nb_log_prob_matches_scipy():
    x = torch.tensor([[0.0, 3.0, 25.0], [1.0, 0.0, 9.0]])
    expected = _nb_scipy(x.numpy(), MU.numpy(), THETA.numpy())
    np.testing.assert_allclose(NegativeBinomial(mu=MU, theta=THETA).log_prob(x).numpy(), expected, rtol=1e-5)


def test_zinb_with_closed_gate_is_nb():
    x = torch.tensor([[0.0, 3.0, 25.0], [1.0, 0.0, 9.0]])
    zinb = ZeroInflatedNegativeBinomial(mu=MU, theta=THETA, zi_logits=torch.full_like(MU, -40.0))
    torch.testing.assert_close(zinb.log_prob(x), NegativeBinomial(mu=MU, theta=THETA).log_prob(x))
    torch.testing.assert_close(zinb.mean, MU)


def test_zinb_zero_inflation_probabilities():
    zinb = ZeroInflatedNegativeBinomial(mu=MU, theta=THETA, zi_logits=ZI)
    torch.testing.assert_close(zinb.zi_probs, torch.sigmoid(ZI))
    torch.manual_seed(0)
    zeros = (zinb.sample((40000,)) == 0).float().mean(0)
    p_nb_zero = (THETA / (THETA + MU)) ** THETA
    expected = torch.sigmoid(ZI) + (1 - torch.sigmoid(ZI)) * p_nb_zero
    torch.testing.assert_close(zeros, expected, atol=0.01, rtol=0)


@pytest.mark.parametrize("cls", [NegativeBinomial, ZeroInflatedNegativeBinomial])
def test_total_count_parametrisations_agree_with_mean_dispersion(cls):
    extra = {"zi_logits": ZI} if cls is ZeroInflatedNegativeBinomial else {}
    x = torch.tensor([[0.0, 3.0, 25.0], [1.0, 0.0, 9.0]])
    by_mean = cls(mu=MU, theta=THETA, **extra)
    probs = MU / (MU + THETA)  # success probability: mean = total_count * probs / (1 - probs)
    by_probs = cls(total_count=THETA, probs=probs, **extra)
    by_logits = cls(total_count=THETA, logits=torch.log(probs) - torch.log1p(-probs), **extra)
    for other in (by_probs, by_logits):
        torch.testing.assert_close(other.mu, by_mean.mu, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(other.log_prob(x), by_mean.log_prob(x), rtol=1e-4, atol=1e-4)
    # and torch's own negative binomial agrees on the (total_count, probs) meaning
    torch_nb = torch.distributions.NegativeBinomial(total_count=THETA, probs=probs)
    torch.testing.assert_close(torch_nb.mean, by_probs.mu, rtol=1e-5, atol=1e-5)


def test_parametrisation_errors():
    with pytest.raises(ValueError, match="parameterizations"):
        NegativeBinomial(total_count=THETA, probs=MU / 100, mu=MU, theta=THETA)
    with pytest.raises(ValueError, match="parameterizations"):
        NegativeBinomial()
    with pytest.raises(ValueError, match="`theta`"):
        NegativeBinomial(mu=MU)
    with pytest.raises(ValueError, match="exactly one of `probs` or `logits`"):
        NegativeBinomial(total_count=THETA)
    with pytest.raises(ValueError, match="zi_logits"):
        ZeroInflatedNegativeBinomial(mu=MU, theta=THETA)


def test_invalid_parameters_are_rejected_when_validating():
    with pytest.raises(ValueError, match="mu"):
        NegativeBinomial(mu=-MU, theta=THETA)
    # without validation (the training hot path) nothing is checked
    NegativeBinomial(mu=-MU, theta=THETA, validate_args=False)


def test_values_outside_the_support_warn():
    nb = NegativeBinomial(mu=MU, theta=THETA)
    with pytest.warns(UserWarning, match="support"):
        nb.log_prob(torch.full_like(MU, 0.5))
    zinb = ZeroInflatedNegativeBinomial(mu=MU, theta=THETA, zi_logits=ZI)
    with pytest.warns(UserWarning, match="support"):
        zinb.log_prob(-torch.ones_like(MU))
    ZeroInflatedNegativeBinomial(mu=MU, theta=THETA, zi_logits=ZI, validate_args=False).log_prob(
        torch.full_like(MU, 0.5)
    )


def test_log_prob_is_differentiable():
    mu = MU.clone().requires_grad_()
    theta = THETA.clone().requires_grad_()
    zi = ZI.clone().requires_grad_()
    loss = -ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=zi).log_prob(torch.ones_like(MU)).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in (mu, theta, zi))
