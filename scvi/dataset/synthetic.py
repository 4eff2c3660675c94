"""Synthetic datasets of the legacy package, with its generative processes.

``SyntheticDataset``
    Zero-inflated negative binomial counts in batches, random labels, protein counts.
``SyntheticRandomDataset``
    Zero-inflated gamma-Poisson counts labelled by the SIMLR clusters of ``random_metadata.pickle``.
``SyntheticDatasetCorr``
    Poisson counts with planted clusters: each cluster highly expresses its own block of genes.
``ZISyntheticDatasetCorr``
    ``SyntheticDatasetCorr`` plus technical zeros (zero-inflation), with the zero probabilities.

Draws reproduce the legacy numbers: ``random_state=None`` draws from numpy's global stream (as
the legacy ``np.random.*`` calls did, so ``scvi.set_seed`` makes them reproducible) and an int
seeds a private ``RandomState``. Unlike the legacy code, nothing here reseeds numpy's global state.
For data with a known ground truth (DE genes, true expression), see :mod:`scvi.dataset._planted`.
"""
import logging
import os
from typing import Union

import numpy as np

from ._safe_pickle import safe_load
from .dataset import CellMeasurement, DownloadableDataset, GeneExpressionDataset

logger = logging.getLogger(__name__)

__all__ = [
    "CellMeasurement",
    "DownloadableDataset",
    "GeneExpressionDataset",
    "SyntheticDataset",
    "SyntheticDatasetCorr",
    "SyntheticRandomDataset",
    "ZISyntheticDatasetCorr",
]

RandomStateLike = Union[None, int, np.random.RandomState, np.random.Generator]


def legacy_random_state(random_state: RandomStateLike = None) -> np.random.RandomState:
    """A ``RandomState`` whose draws match the legacy ``np.random.*`` calls.

    Parameters
    ----------
    random_state
        ``None`` for numpy's global ``RandomState`` (drawn from, never reseeded), an int seed, a
        ``RandomState`` (used as is) or a ``Generator`` (seeds a new ``RandomState``).

    Returns
    -------
    numpy.random.RandomState
    """
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(int(random_state.integers(2**31 - 1)))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, (bool, np.bool_)):
        return np.random.RandomState(int(random_state))
    raise TypeError(
        f"`random_state` must be None, an int, a numpy RandomState or Generator; got {type(random_state).__name__}"
    )


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}; got {value}")


class SyntheticDataset(GeneExpressionDataset):
    """Zero-inflated negative binomial counts in batches, with random labels and protein counts.

    Every entry is ``NB(n=5, p=0.3)`` (mean 11.7) kept with probability 0.7; labels are drawn
    uniformly. There is no biological structure: the dataset exercises the API (batches, labels,
    ``protein_expression``), not the models' accuracy.

    Parameters
    ----------
    batch_size
        Cells per batch; the dataset has ``n_batches * batch_size`` cells.
    nb_genes
        Number of genes (named ``"0"``, ``"1"``, …).
    n_proteins
        Number of proteins of the ``protein_expression`` measurement (names ``0``, ``1``, …).
    n_batches
        Number of batches.
    n_labels
        Number of labels drawn (cell types ``"undefined_0"``, …; unused ones are dropped).
    random_state
        ``None`` draws from numpy's global state (legacy behaviour); an int or a generator makes
        the dataset reproducible on its own.

    Examples
    --------
    >>> gene_dataset = SyntheticDataset(n_labels=3)
    >>> gene_dataset.X.shape, gene_dataset.protein_expression.shape
    ((400, 100), (400, 100))
    """

    def __init__(
        self,
        batch_size: int = 200,
        nb_genes: int = 100,
        n_proteins: int = 100,
        n_batches: int = 2,
        n_labels: int = 3,
        random_state: RandomStateLike = None,
    ):
        super().__init__()
        for name, value, minimum in [
            ("batch_size", batch_size, 1),
            ("nb_genes", nb_genes, 1),
            ("n_proteins", n_proteins, 0),
            ("n_batches", n_batches, 1),
            ("n_labels", n_labels, 1),
        ]:
            _check_int(name, value, minimum)
        rng = legacy_random_state(random_state)
        shape = (n_batches, batch_size, nb_genes)
        data = rng.negative_binomial(5, 0.3, size=shape) * rng.binomial(n=1, p=0.7, size=shape)
        labels = rng.randint(0, n_labels, size=(n_batches, batch_size, 1))
        self.populate_from_per_batch_list(
            list(data),
            labels_per_batch=list(labels),
            gene_names=np.arange(nb_genes).astype(str),
            cell_types=[f"undefined_{i}" for i in range(n_labels)],
        )
        # drop cell types no cell was drawn from
        self.remap_categorical_attributes()
        proteins = rng.negative_binomial(5, 0.3, size=(self.X.shape[0], n_proteins))
        self.initialize_cell_measurement(
            CellMeasurement(
                name="protein_expression",
                data=proteins,
                columns_attr_name="protein_names",
                columns=np.arange(n_proteins),
            )
        )


class SyntheticRandomDataset(DownloadableDataset):
    """Zero-inflated gamma-Poisson counts labelled with precomputed SIMLR clusters.

    2,000 cells x 10 genes are drawn (with a fixed seed, 0, for which the labels were computed):
    ``Poisson(Gamma(theta, mu / theta))`` kept with probability ``1 - dropout``; cells without
    counts are dropped. The labels are the ``clusters`` of ``random_metadata.pickle``, downloaded
    into ``save_path`` (or fetched from a mirror, see :func:`scvi.dataset.set_data_mirror`) and
    read without executing code.

    Parameters
    ----------
    mu
        Mean of the counts before dropout.
    theta
        Inverse dispersion.
    dropout
        Probability that a count is replaced by zero.
    save_path
        Folder of ``random_metadata.pickle``.

    Raises
    ------
    ValueError
        If the parameters keep a different number of cells than the labels cover (the labels were
        computed for ``mu=4, theta=2, dropout=0.7``).
    """

    FILENAME = "random_metadata.pickle"
    _URL = "https://github.com/YosefLab/scVI-data/raw/master/random_metadata.pickle"
    _SEED = 0  # the seed the SIMLR labels of the metadata were computed with
    _SHAPE = (2000, 10)

    def __init__(self, mu: float = 4.0, theta: float = 2.0, dropout: float = 0.7, save_path: str = "data/"):
        if not mu > 0 or not theta > 0:
            raise ValueError(f"`mu` and `theta` must be positive; got mu={mu}, theta={theta}")
        if not 0 <= dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1); got {dropout}")
        self.mu = mu
        self.theta = theta
        self.dropout = dropout
        self.simlr_metadata = None
        super().__init__(urls=self._URL, filenames=SyntheticRandomDataset.FILENAME, save_path=save_path)

    def populate(self):
        """Simulate the counts and label them with the clusters of ``random_metadata.pickle``."""
        rng = np.random.RandomState(self._SEED)
        p = self.mu / (self.mu + self.theta)
        counts = rng.poisson(rng.gamma(self.theta, p / (1 - p), size=self._SHAPE))
        counts *= rng.binomial(1, 1 - self.dropout, size=self._SHAPE)
        counts = counts[counts.sum(axis=1) > 0]
        logger.info(f"mu {self.mu} theta {self.theta} r {self.theta} p {p} dropout {self.dropout}")

        self.simlr_metadata = safe_load(os.path.join(self.save_path, self.FILENAME))
        labels = np.asarray(self.simlr_metadata["clusters"])
        if labels.shape[0] != counts.shape[0]:
            raise ValueError(
                f"{self.FILENAME} labels {labels.shape[0]} cells but mu={self.mu}, theta={self.theta}, "
                f"dropout={self.dropout} leave {counts.shape[0]} cells with counts; the labels were computed "
                "for mu=4.0, theta=2.0, dropout=0.7"
            )
        self.populate_from_data(counts, labels=labels)


class SyntheticDatasetCorr(GeneExpressionDataset):
    """Poisson counts with planted clusters, each highly expressing its own block of genes.

    Cluster ``k`` (``n_cells_cluster`` cells, label ``k``) highly expresses genes
    ``k * (n_genes_high - n_overlap)`` to that plus ``n_genes_high``; consecutive clusters share
    ``n_overlap`` of them. A cell's gene weights are ``weight_high`` on its block and
    ``weight_low`` elsewhere, normalised to sum to one, and its counts are
    ``Poisson(lam_0 * weight)``. All cells form one batch. Subclasses turn counts into zeros
    through :meth:`mask`.

    Parameters
    ----------
    n_cells_cluster
        Cells per cluster.
    n_clusters
        Number of clusters.
    n_genes_high
        Highly expressed genes per cluster.
    n_overlap
        Highly expressed genes shared by consecutive clusters (less than ``n_genes_high``).
    weight_high, weight_low
        Relative expression of the highly and lowly expressed genes.
    lam_0
        Total Poisson rate of a cell.
    random_state
        Seed (default 0, the legacy dataset) or generator; numpy's global state is not touched.

    Attributes
    ----------
    exprs_param
        Poisson rate of each count, shape ``(1, n_cells, n_genes_total)``.
    is_highly_exp
        Whether each count belongs to its cell's highly expressed block, same shape.
    poisson_zero
        Probability that each Poisson count is zero, same shape.
    """

    def __init__(
        self,
        n_cells_cluster: int = 200,
        n_clusters: int = 3,
        n_genes_high: int = 25,
        n_overlap: int = 0,
        weight_high: float = 4e-2,
        weight_low: float = 1e-2,
        lam_0: float = 50.0,
        random_state: RandomStateLike = 0,
    ):
        super().__init__()
        for name, value, minimum in [
            ("n_cells_cluster", n_cells_cluster, 1),
            ("n_clusters", n_clusters, 1),
            ("n_genes_high", n_genes_high, 1),
            ("n_overlap", n_overlap, 0),
        ]:
            _check_int(name, value, minimum)
        if n_overlap >= n_genes_high:
            raise ValueError(f"`n_overlap` ({n_overlap}) must be less than `n_genes_high` ({n_genes_high})")
        if not (weight_high > 0 and weight_low > 0 and lam_0 > 0):
            raise ValueError(
                f"`weight_high`, `weight_low` and `lam_0` must be positive; got {weight_high}, {weight_low}, {lam_0}"
            )
        self._random_state = legacy_random_state(random_state)
        n_genes_total = n_clusters * (n_genes_high - n_overlap) + n_overlap
        batch_size = n_cells_cluster * n_clusters
        self.n_cells_cluster = n_cells_cluster
        self.n_clusters = n_clusters
        self.batch_size = batch_size
        self.n_genes_total = n_genes_total
        self.n_genes_high = n_genes_high
        self.probas_zero_bio_tech_high = None
        self.probas_zero_bio_tech_low = None

        cluster_of_cell = np.repeat(np.arange(n_clusters), n_cells_cluster)
        first_high = np.arange(n_clusters) * (n_genes_high - n_overlap)
        genes = np.arange(n_genes_total)
        high = (genes >= first_high[:, None]) & (genes < first_high[:, None] + n_genes_high)
        weights = np.where(high, weight_high, weight_low)
        weights = weights / weights.sum(axis=1, keepdims=True)
        self.is_highly_exp = high[cluster_of_cell][None]
        self.exprs_param = (lam_0 * weights)[cluster_of_cell][None]
        logger.info(f"Poisson Params extremal values: {self.exprs_param.min()}, {self.exprs_param.max()}")

        expression = self._random_state.poisson(self.exprs_param)
        self.poisson_zero = np.exp(-self.exprs_param)
        data = self.mask(expression)
        logger.info(f"{int((data == 0).sum())} zero counts")
        self.populate_from_per_batch_list(
            list(data),
            labels_per_batch=[cluster_of_cell[:, None]],
            gene_names=genes.astype(str),
        )

    def mask(self, data: np.ndarray) -> np.ndarray:
        """Counts after technical dropout; none here.

        Parameters
        ----------
        data
            Counts, shape ``(1, n_cells, n_genes_total)``.

        Returns
        -------
        np.ndarray
            ``data`` itself.
        """
        return data


class ZISyntheticDatasetCorr(SyntheticDatasetCorr):
    """``SyntheticDatasetCorr`` with technical zeros (zero-inflation).

    A count is zeroed with probability ``dropout_coef_high * exp(-lam_dropout_high * rate**2)`` in
    its cell's highly expressed block and ``dropout_coef_low * exp(-lam_dropout_low * rate**2)``
    elsewhere (``rate`` is its Poisson rate).

    Parameters
    ----------
    dropout_coef_high, dropout_coef_low
        Dropout probability at rate zero, for highly / lowly expressed genes; in ``[0, 1)``.
    lam_dropout_high, lam_dropout_low
        Decay of the dropout probability with the squared rate.
    n_cells_cluster, n_clusters, n_genes_high, n_overlap, weight_high, weight_low, lam_0, random_state
        As in :class:`SyntheticDatasetCorr`.

    Attributes
    ----------
    p_dropout
        Dropout probability of each count, shape ``(1, n_cells, n_genes_total)``.
    is_technical
        Whether each count was zeroed by dropout, same shape.
    probas_zero_bio_tech_high, probas_zero_bio_tech_low
        ``2 x 2`` tables, over the highly / lowly expressed counts, of the mean probability of
        (Poisson zero?, dropout?): row 0 Poisson non-zero, row 1 Poisson zero; column 0 kept,
        column 1 dropped. Each table sums to one.
    """

    def __init__(
        self,
        dropout_coef_high: float = 0.05,
        lam_dropout_high: float = 0.0,
        dropout_coef_low: float = 0.08,
        lam_dropout_low: float = 0.0,
        n_cells_cluster: int = 200,
        n_clusters: int = 3,
        n_genes_high: int = 25,
        n_overlap: int = 0,
        weight_high: float = 4e-2,
        weight_low: float = 1e-2,
        lam_0: float = 50.0,
        random_state: RandomStateLike = 0,
    ):
        for name, value in [("dropout_coef_high", dropout_coef_high), ("dropout_coef_low", dropout_coef_low)]:
            if not 0 <= value < 1:
                raise ValueError(f"`{name}` must be in [0, 1); got {value}")
        for name, value in [("lam_dropout_high", lam_dropout_high), ("lam_dropout_low", lam_dropout_low)]:
            if not value >= 0:
                raise ValueError(f"`{name}` must be non-negative; got {value}")
        self.dropout_coef_high = dropout_coef_high
        self.lam_dropout_high = lam_dropout_high
        self.dropout_coef_low = dropout_coef_low
        self.lam_dropout_low = lam_dropout_low
        self.p_dropout = None
        self.zi_zero = None
        self.is_technical = None
        super().__init__(
            n_cells_cluster=n_cells_cluster,
            n_clusters=n_clusters,
            n_genes_high=n_genes_high,
            n_overlap=n_overlap,
            weight_high=weight_high,
            weight_low=weight_low,
            lam_0=lam_0,
            random_state=random_state,
        )

    def mask(self, data: np.ndarray) -> np.ndarray:
        """Zero each count with its dropout probability and record which zeros are technical.

        Parameters
        ----------
        data
            Poisson counts, shape ``(1, n_cells, n_genes_total)``.

        Returns
        -------
        np.ndarray
            The counts after dropout, float32, same shape.
        """
        squared_rate = self.exprs_param**2
        self.p_dropout = np.where(
            self.is_highly_exp,
            self.dropout_coef_high * np.exp(-self.lam_dropout_high * squared_rate),
            self.dropout_coef_low * np.exp(-self.lam_dropout_low * squared_rate),
        )
        kept = self._random_state.binomial(n=1, p=1 - self.p_dropout, size=data.shape)
        self.is_technical = kept == 0
        self.zi_zero = self.p_dropout
        self.probas_zero_bio_tech_high = self._zero_table(self.is_highly_exp)
        self.probas_zero_bio_tech_low = self._zero_table(~self.is_highly_exp)
        return data * kept.astype(np.float32)

    def _zero_table(self, where: np.ndarray) -> np.ndarray:
        """Mean probabilities of (Poisson zero, dropout) over the counts selected by ``where``."""
        poisson_zero = self.poisson_zero[where]
        dropout = self.zi_zero[where]
        return np.array(
            [
                [np.mean((1 - poisson_zero) * (1 - dropout)), np.mean((1 - poisson_zero) * dropout)],
                [np.mean(poisson_zero * (1 - dropout)), np.mean(poisson_zero * dropout)],
            ]
        )
