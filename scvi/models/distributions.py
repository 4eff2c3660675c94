"""Count distributions as :class:`torch.distributions.Distribution` subclasses.

They wrap the pure functions of :mod:`scvi.models.log_likelihood`. Negative binomials accept
either the scVI parametrisation ``(mu, theta)`` (mean, inverse dispersion) or the classical
``(total_count, probs)`` / ``(total_count, logits)``, where ``probs`` is the success probability
and ``mean = total_count * probs / (1 - probs)``.
"""
import logging
import warnings
from typing import Optional, Tuple, Union

import torch
from torch.distributions import Distribution, Gamma, Poisson, constraints
from torch.distributions.utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits

from .log_likelihood import LOG_EPS, log_mixture_nb, log_nb_positive, log_poisson, log_zinb_positive

logger = logging.getLogger(__name__)

__all__ = [
    "NegativeBinomial",
    "ZeroInflatedNegativeBinomial",
    "NegativeBinomialMixture",
    "Poisson",
    "log_nb_positive",
    "log_zinb_positive",
]

_SUPPORT_WARNING = "The value argument must be within the support of the distribution"


def _convert_mean_disp_to_counts_logits(
    mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-6
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(mu, theta)`` -> ``(total_count, logits)`` of the same negative binomial.

    Parameters
    ----------
    mu
        Means.
    theta
        Inverse dispersions.
    eps
        Constant for the logarithms.

    Returns
    -------
    tuple
        ``total_count = theta`` and ``logits = log(mu) - log(theta)``.
    """
    if (mu is None) != (theta is None):
        raise ValueError("the (mu, theta) parametrisation needs both `mu` and `theta`")
    logits = (mu + eps).log() - (theta + eps).log()
    return theta, logits


def _convert_counts_logits_to_mean_disp(
    total_count: torch.Tensor, logits: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(total_count, logits)`` -> ``(mu, theta)`` of the same negative binomial."""
    theta = total_count
    mu = logits.exp() * theta
    return mu, theta


def _resolve_nb_params(total_count, probs, logits, mu, theta) -> Tuple[torch.Tensor, torch.Tensor]:
    """Validate which parametrisation was given and return broadcast ``(mu, theta)``."""
    if (mu is None) == (total_count is None):
        raise ValueError(
            "Please use one of the two possible parameterizations: (`mu`, `theta`) or "
            "(`total_count`, `probs` or `logits`)."
        )
    if total_count is not None:
        if (probs is None) == (logits is None):
            raise ValueError("with `total_count`, give exactly one of `probs` or `logits`")
        logits = logits if logits is not None else probs_to_logits(probs, is_binary=True)
        total_count = torch.as_tensor(total_count).type_as(logits)
        total_count, logits = broadcast_all(total_count, logits)
        return _convert_counts_logits_to_mean_disp(total_count, logits)
    if theta is None:
        raise ValueError("the (mu, theta) parametrisation needs both `mu` and `theta`")
    if not isinstance(mu, torch.Tensor) or not isinstance(theta, torch.Tensor):
        mu, theta = broadcast_all(mu, theta)
    return mu, theta


class NegativeBinomial(Distribution):
    r"""Negative binomial distribution.

    Two parametrisations:

    - ``(mu, theta)``: mean and inverse dispersion, as used by scVI
      (``variance = mu + mu ** 2 / theta``);
    - ``(total_count, probs)`` or ``(total_count, logits)``: number of failures until the
      experiment stops and success probability.

    Parameters
    ----------
    total_count
        Number of failures (the inverse dispersion).
    probs
        Success probabilities.
    logits
        Success logits.
    mu
        Means, shape ``(..., n_genes)``.
    theta
        Inverse dispersions, broadcastable with ``mu``.
    validate_args
        Check the parameters at construction and warn when ``log_prob`` gets values outside the
        support (non-negative integers).

    Examples
    --------
    >>> import torch
    >>> nb = NegativeBinomial(mu=torch.tensor([2.0, 5.0]), theta=torch.tensor([1.0, 10.0]))
    >>> nb.log_prob(torch.tensor([0.0, 4.0])).shape
    torch.Size([2])
    """

    arg_constraints = {
        "mu": constraints.greater_than_eq(0),
        "theta": constraints.greater_than_eq(0),
    }
    support = constraints.nonnegative_integer

    def __init__(
        self,
        total_count: Optional[torch.Tensor] = None,
        probs: Optional[torch.Tensor] = None,
        logits: Optional[torch.Tensor] = None,
        mu: Optional[torch.Tensor] = None,
        theta: Optional[torch.Tensor] = None,
        validate_args: bool = True,
    ):
        self._eps = LOG_EPS
        mu, theta = _resolve_nb_params(total_count, probs, logits, mu, theta)
        # the likelihood is computed from the parameters as given (a per-gene theta stays a row:
        # broadcast views would make every element-wise pass slower); attributes are broadcast
        self._params = (mu, theta)
        self.mu, self.theta = broadcast_all(mu, theta)
        super().__init__(batch_shape=self.mu.shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        """The mean ``mu``."""
        return self.mu

    @property
    def variance(self) -> torch.Tensor:
        """``mu + mu ** 2 / theta``."""
        return self.mean + (self.mean**2) / self.theta

    def _warn_outside_support(self, value: torch.Tensor) -> None:
        if self._validate_args:
            try:
                self._validate_sample(value)
            except ValueError:
                warnings.warn(_SUPPORT_WARNING, UserWarning, stacklevel=3)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise log-probability of counts ``value``."""
        self._warn_outside_support(value)
        mu, theta = self._params
        return log_nb_positive(value, mu=mu, theta=theta, eps=self._eps)

    def _gamma(self) -> Gamma:
        # Gamma is parametrised by its rate = 1 / scale.
        return Gamma(concentration=self.theta, rate=self.theta / self.mu, validate_args=False)

    @torch.no_grad()
    def sample(self, sample_shape: Union[torch.Size, Tuple] = torch.Size()) -> torch.Tensor:
        """Draw counts through the Gamma-Poisson mixture, shape ``sample_shape + batch_shape``."""
        gamma_means = self._gamma().sample(sample_shape)
        # Poisson sampling misbehaves for huge rates: clamp as scVI 0.6 did.
        return Poisson(torch.clamp(gamma_means, max=1e8), validate_args=False).sample()


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    r"""Zero-inflated negative binomial distribution.

    A negative binomial (either parametrisation, see :class:`NegativeBinomial`) whose values are
    replaced by zero with probability ``sigmoid(zi_logits)``.

    Parameters
    ----------
    total_count, probs, logits, mu, theta
        Parameters of the negative binomial component.
    zi_logits
        Logits of the zero-inflation probability, broadcastable with ``mu``.
    validate_args
        See :class:`NegativeBinomial`.
    """

    arg_constraints = {
        **NegativeBinomial.arg_constraints,
        "zi_probs": constraints.half_open_interval(0.0, 1.0),
        "zi_logits": constraints.real,
    }

    def __init__(
        self,
        total_count: Optional[torch.Tensor] = None,
        probs: Optional[torch.Tensor] = None,
        logits: Optional[torch.Tensor] = None,
        mu: Optional[torch.Tensor] = None,
        theta: Optional[torch.Tensor] = None,
        zi_logits: Optional[torch.Tensor] = None,
        validate_args: bool = True,
    ):
        if zi_logits is None:
            raise ValueError("ZeroInflatedNegativeBinomial needs `zi_logits`")
        self._eps = LOG_EPS
        mu, theta = _resolve_nb_params(total_count, probs, logits, mu, theta)
        self._params = (mu, theta, zi_logits)
        self.zi_logits, self.mu, self.theta = broadcast_all(zi_logits, mu, theta)
        Distribution.__init__(self, batch_shape=self.mu.shape, validate_args=validate_args)

    @lazy_property
    def zi_logits(self) -> torch.Tensor:
        """Logits of the zero-inflation probability."""
        return probs_to_logits(self.zi_probs, is_binary=True)

    @lazy_property
    def zi_probs(self) -> torch.Tensor:
        """Zero-inflation probability ``sigmoid(zi_logits)``."""
        return logits_to_probs(self.zi_logits, is_binary=True)

    @property
    def mean(self) -> torch.Tensor:
        """``(1 - zi_probs) * mu``."""
        return (1 - self.zi_probs) * self.mu

    @property
    def variance(self) -> torch.Tensor:
        """``(1 - p) (mu + mu ** 2 / theta) + p (1 - p) mu ** 2`` with ``p = zi_probs``."""
        p = self.zi_probs
        return (1 - p) * (self.mu + self.mu**2 / self.theta) + p * (1 - p) * self.mu**2

    @torch.no_grad()
    def sample(self, sample_shape: Union[torch.Size, Tuple] = torch.Size()) -> torch.Tensor:
        """Draw counts, shape ``sample_shape + batch_shape``."""
        samples = super().sample(sample_shape=sample_shape)
        is_zero = torch.rand_like(samples) <= self.zi_probs
        return samples.masked_fill(is_zero, 0.0)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise log-probability of counts ``value``."""
        self._warn_outside_support(value)
        mu, theta, zi_logits = self._params
        return log_zinb_positive(value, mu, theta, zi_logits, eps=self._eps)


class NegativeBinomialMixture(Distribution):
    r"""Mixture of two negative binomials (totalVI's protein background / foreground model).

    Parameters
    ----------
    mu1
        Mean of the first component (for totalVI: background).
    mu2
        Mean of the second component (foreground).
    theta1
        Inverse dispersion of the first component.
    mixture_logits
        Logits of the probability of the first component.
    theta2
        Inverse dispersion of the second component; ``None`` shares ``theta1``.
    validate_args
        See :class:`NegativeBinomial`.
    """

    arg_constraints = {
        "mu1": constraints.greater_than_eq(0),
        "mu2": constraints.greater_than_eq(0),
        "theta1": constraints.greater_than_eq(0),
        "mixture_probs": constraints.half_open_interval(0.0, 1.0),
        "mixture_logits": constraints.real,
    }
    support = constraints.nonnegative_integer

    def __init__(
        self,
        mu1: torch.Tensor,
        mu2: torch.Tensor,
        theta1: torch.Tensor,
        mixture_logits: torch.Tensor,
        theta2: Optional[torch.Tensor] = None,
        validate_args: bool = False,
    ):
        self._eps = LOG_EPS
        self._params = (mu1, mu2, theta1, theta2, mixture_logits)
        self.mu1, self.theta1, self.mu2, self.mixture_logits = broadcast_all(mu1, theta1, mu2, mixture_logits)
        self.theta2 = None if theta2 is None else broadcast_all(mu1, theta2)[1]
        super().__init__(batch_shape=self.mu1.shape, validate_args=validate_args)

    @lazy_property
    def mixture_probs(self) -> torch.Tensor:
        """Probability of the first component, ``sigmoid(mixture_logits)``."""
        return logits_to_probs(self.mixture_logits, is_binary=True)

    @property
    def mean(self) -> torch.Tensor:
        """``pi * mu1 + (1 - pi) * mu2``."""
        pi = self.mixture_probs
        return pi * self.mu1 + (1 - pi) * self.mu2

    @property
    def variance(self) -> torch.Tensor:
        """Law of total variance over the two components."""
        pi = self.mixture_probs
        theta2 = self.theta1 if self.theta2 is None else self.theta2
        second_1 = self.mu1 + self.mu1**2 / self.theta1 + self.mu1**2
        second_2 = self.mu2 + self.mu2**2 / theta2 + self.mu2**2
        return pi * second_1 + (1 - pi) * second_2 - self.mean**2

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise log-probability of counts ``value``."""
        if self._validate_args:
            try:
                self._validate_sample(value)
            except ValueError:
                warnings.warn(_SUPPORT_WARNING, UserWarning, stacklevel=2)
        mu1, mu2, theta1, theta2, mixture_logits = self._params
        return log_mixture_nb(value, mu1, mu2, theta1, theta2, mixture_logits, eps=self._eps)

    @torch.no_grad()
    def sample(self, sample_shape: Union[torch.Size, Tuple] = torch.Size()) -> torch.Tensor:
        """Draw counts, shape ``sample_shape + batch_shape``."""
        pi = self.mixture_probs.expand(torch.Size(sample_shape) + self.batch_shape)
        first = torch.bernoulli(pi).bool()
        mu = torch.where(first, self.mu1, self.mu2)
        theta = self.theta1 if self.theta2 is None else torch.where(first, self.theta1, self.theta2)
        return NegativeBinomial(mu=mu, theta=theta, validate_args=False).sample()


class StablePoisson(Poisson):
    """:class:`torch.distributions.Poisson` whose ``log_prob`` stays finite for a zero rate."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise log-probability of counts ``value`` (``log(rate + 1e-8)`` inside)."""
        if self._validate_args:
            self._validate_sample(value)
        return log_poisson(value, self.rate)
