"""The ``Posterior``: a trained model together with a subset of cells, and what can be computed
from them. The class is a thin facade over the parts in :mod:`scvi.inference._posterior`."""
import logging

from ._posterior._sampling import SequentialSubsetSampler
from ._posterior.base import PosteriorBase
from ._posterior.differential import DifferentialExpressionMixin
from ._posterior.generation import GenerationMixin
from ._posterior.latent import LatentMixin
from ._posterior.metrics import MetricsMixin
from ._posterior.plotting import PlottingMixin
from .posterior_utils import (  # noqa: F401 - legacy re-exports of scvi.inference.posterior
    entropy_batch_mixing,
    knn_purity,
    nn_overlap,
    plot_imputation,
    unsupervised_clustering_accuracy,
)

logger = logging.getLogger(__name__)

try:  # legacy re-exports of modules written in parallel (models, dataset, differential expression)
    from scvi.dataset import GeneExpressionDataset  # noqa: F401
except ImportError:  # pragma: no cover
    pass
try:
    from scvi.models.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial  # noqa: F401
    from scvi.models.log_likelihood import (  # noqa: F401
        compute_elbo,
        compute_marginal_log_likelihood_autozi,
        compute_marginal_log_likelihood_scvi,
        compute_reconstruction_error,
    )
except ImportError:  # pragma: no cover
    pass
try:
    from .posterior_utils import describe_continuous_distrib, pairs_sampler, save_cluster_xlsx  # noqa: F401
except ImportError:  # pragma: no cover
    pass


class Posterior(
    DifferentialExpressionMixin,
    PlottingMixin,
    MetricsMixin,
    GenerationMixin,
    LatentMixin,
    PosteriorBase,
):
    """A model and a subset of the cells of a dataset: latent space, imputation, metrics, plots,
    differential expression.

    A ``Trainer`` holds several posteriors (``train_set``, ``test_set`` ...); build others with
    ``trainer.create_posterior(...)``.

    Parameters
    ----------
    model
        A model (``VAE``, ``VAEC``, ``SCANVI`` ...).
    gene_dataset
        A ``GeneExpressionDataset``.
    shuffle
        Iterate over all cells in random order (exclusive with ``indices``).
    indices
        Cells of the posterior (integer indices or a boolean mask; default: all).
    use_cuda
        Compute on the GPU if there is one (CPU fallback with one warning).
    data_loader_kwargs
        Data-loader options, e.g. ``{"batch_size": 128}``.

    Examples
    --------
    >>> trainer = UnsupervisedTrainer(vae, gene_dataset)
    >>> trainer.train(n_epochs=50)
    >>> trainer.train_set.reconstruction_error()
    >>> trainer.train_set.entropy_batch_mixing()
    >>> full = trainer.create_posterior(trainer.model, gene_dataset, indices=np.arange(len(gene_dataset)))
    >>> latent, batch_indices, labels = full.sequential().get_latent()
    """


__all__ = ["Posterior", "SequentialSubsetSampler", "unsupervised_clustering_accuracy"]
