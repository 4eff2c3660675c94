"""The legacy evaluation helpers of scvi.models.log_likelihood over a posterior-like iterable."""
import numpy as np
import pytest
import torch

from scvi.models import VAE
from scvi.models.log_likelihood import (
    compute_elbo,
    compute_marginal_log_likelihood_scvi,
    compute_reconstruction_error,
)

N_GENES = 30


class _FakePosterior:
    """What the helpers need from a Posterior: iteration over minibatches and ``indices``."""

    def __init__(self, n_cells=48, batch_size=16):
        g = torch.Generator().manual_seed(0)
        self.x = torch.poisson(torch.rand(n_cells, N_GENES, generator=g) * 6)
        log_lib = torch.log(self.x.sum(1, keepdim=True))
        self.lm = torch.full_like(log_lib, float(log_lib.mean()))
        self.lv = torch.full_like(log_lib, float(log_lib.var()))
        self.batch = torch.randint(0, 2, (n_cells, 1), generator=g)
        self.labels = torch.zeros(n_cells, 1, dtype=torch.long)
        self.indices = np.arange(n_cells)
        self.batch_size = batch_size

    def __iter__(self):
        for start in range(0, len(self.indices), self.batch_size):
            s = slice(start, start + self.batch_size)
            yield self.x[s], self.lm[s], self.lv[s], self.batch[s], self.labels[s]


@pytest.mark.parametrize("latent_distribution", ["normal", "ln"])
def test_elbo_reconstruction_and_marginal_likelihood(latent_distribution):
    torch.manual_seed(0)
    posterior = _FakePosterior()
    vae = VAE(N_GENES, n_batch=2, n_hidden=16, latent_distribution=latent_distribution).eval()
    torch.manual_seed(1)
    elbo = compute_elbo(vae, posterior)
    torch.manual_seed(1)
    with torch.no_grad():
        terms = [vae(x, lm, lv, b, y) for x, lm, lv, b, y in posterior]
    expected = float(sum((r + k).sum() for r, k, _ in terms)) / 48
    assert elbo == pytest.approx(expected, rel=1e-6)
    reconstruction = compute_reconstruction_error(vae, posterior)
    assert isinstance(reconstruction, float) and 0 < reconstruction < elbo
    # importance sampling tightens the bound: -log p(x) estimate below the negative ELBO
    torch.manual_seed(2)
    elbo_avg = np.mean([compute_elbo(vae, posterior) for _ in range(20)])
    marginal = compute_marginal_log_likelihood_scvi(vae, posterior, n_samples_mc=40)
    assert np.isfinite(marginal)
    assert marginal < elbo_avg
