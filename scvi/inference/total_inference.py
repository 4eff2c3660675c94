"""totalVI training (:class:`TotalTrainer`, with the optional adversarial batch classifier) and
:class:`TotalPosterior` (defined in :mod:`scvi.inference._total_posterior`)."""
import logging
from typing import Union

import torch

from scvi.dataset import GeneExpressionDataset
from scvi.inference._total_posterior import TotalPosterior
from scvi.inference.inference import UnsupervisedTrainer
from scvi.inference.posterior import Posterior  # noqa: F401 (legacy re-export)
from scvi.models.classifier import Classifier
from scvi.models.totalvi import TOTALVI
from scvi.models.utils import one_hot

logger = logging.getLogger(__name__)

__all__ = ["TotalPosterior", "TotalTrainer", "default_early_stopping_kwargs"]

default_early_stopping_kwargs = {
    "early_stopping_metric": "elbo",
    "save_best_state_metric": "elbo",
    "patience": 45,
    "threshold": 0,
    "reduce_lr_on_plateau": True,
    "lr_patience": 30,
    "lr_factor": 0.6,
    "posterior_class": TotalPosterior,
}


class TotalTrainer(UnsupervisedTrainer):
    """Unsupervised training of totalVI by variational inference.

    The loss of a minibatch is the mean over cells of
    ``reconst_gene + pro_recons_weight * reconst_protein + kl_weight * (kl_z + kl_background) + kl_library``.
    With ``use_adversarial_loss``, a classifier learns to predict the batch from ``z`` and the
    model is additionally trained to fool it (weight ``kappa``).

    Parameters
    ----------
    model
        A :class:`~scvi.models.TOTALVI` model.
    dataset
        A dataset with ``protein_expression`` (e.g. ``CbmcDataset()``).
    train_size, test_size
        Fractions of cells in the training and test sets (the rest is the validation set).
    pro_recons_weight
        Weight of the protein reconstruction loss.
    n_epochs_kl_warmup
        Epochs over which the KL weight of ``z`` and of the background grows from 0 to 1
        (takes precedence over ``n_iter_kl_warmup``).
    n_iter_kl_warmup
        Minibatches of KL warm-up; ``"auto"`` means 75% of the number of cells. ``None`` (with
        ``n_epochs_kl_warmup=None``) disables the warm-up.
    discriminator
        Batch classifier of the adversarial scheme (a 2-layer :class:`Classifier` by default).
    use_adversarial_loss
        Train adversarially against the batch classifier (needs at least two batches).
    kappa
        Weight of the adversarial loss; ``None`` follows ``1 - kl_weight``.
    early_stopping_kwargs
        Early-stopping arguments; ``"auto"`` uses the totalVI defaults (on the test-set ELBO, with
        ``frequency=1`` unless a ``frequency`` is given), ``None`` disables it.
    **kwargs
        Arguments of :class:`~scvi.inference.Trainer` (``use_cuda``, ``frequency``,
        ``data_loader_kwargs``, ``batch_size``, ``show_progbar`` ...).

    Examples
    --------
    >>> dataset = CbmcDataset()
    >>> model = TOTALVI(dataset.nb_genes, len(dataset.protein_names), n_batch=dataset.n_batches)
    >>> trainer = TotalTrainer(model, dataset)
    >>> trainer.train(n_epochs=500)
    """

    default_metrics_to_monitor = ["elbo"]

    def __init__(
        self,
        model: TOTALVI,
        dataset: GeneExpressionDataset,
        train_size: float = 0.9,
        test_size: float = 0.1,
        pro_recons_weight: float = 1.0,
        n_epochs_kl_warmup: int = None,
        n_iter_kl_warmup: Union[str, int] = "auto",
        discriminator: Classifier = None,
        use_adversarial_loss: bool = False,
        kappa: float = None,
        early_stopping_kwargs: Union[dict, str, None] = "auto",
        **kwargs,
    ):
        train_size = float(train_size)
        if not 0.0 < train_size <= 1.0:
            raise ValueError(f"`train_size` must be in (0, 1]; got {train_size!r}")
        if isinstance(n_iter_kl_warmup, str):
            if n_iter_kl_warmup != "auto":
                raise ValueError(f"`n_iter_kl_warmup` must be 'auto', an int or None; got {n_iter_kl_warmup!r}")
            n_iter_kl_warmup = int(0.75 * len(dataset))
        if isinstance(early_stopping_kwargs, str):
            if early_stopping_kwargs != "auto":
                raise ValueError(
                    f"`early_stopping_kwargs` must be 'auto', a dict or None; got {early_stopping_kwargs!r}"
                )
            early_stopping_kwargs = dict(default_early_stopping_kwargs)
            if kwargs.get("frequency") is None:
                # early stopping reads the test-set ELBO, computed every `frequency` epochs
                kwargs["frequency"] = 1
        if pro_recons_weight < 0:
            raise ValueError(f"`pro_recons_weight` must be >= 0; got {pro_recons_weight!r}")
        if kappa is not None and kappa < 0:
            raise ValueError(f"`kappa` must be None or >= 0; got {kappa!r}")
        if getattr(dataset, "protein_expression", None) is None:
            raise ValueError("`dataset` has no `protein_expression`; totalVI needs protein counts")
        if dataset.protein_expression.shape[1] != model.n_input_proteins:
            raise ValueError(
                f"the dataset has {dataset.protein_expression.shape[1]} proteins but the model expects "
                f"n_input_proteins={model.n_input_proteins}"
            )
        if use_adversarial_loss and dataset.n_batches < 2:
            raise ValueError("`use_adversarial_loss=True` needs a dataset with at least 2 batches")

        self.n_genes = dataset.nb_genes
        self.n_proteins = model.n_input_proteins
        self.use_adversarial_loss = use_adversarial_loss
        self.kappa = kappa
        self.pro_recons_weight = pro_recons_weight
        super().__init__(
            model,
            dataset,
            train_size=train_size,
            test_size=test_size,
            n_epochs_kl_warmup=n_epochs_kl_warmup,
            n_iter_kl_warmup=n_iter_kl_warmup,
            early_stopping_kwargs=early_stopping_kwargs,
            **kwargs,
        )

        if use_adversarial_loss and discriminator is None:
            discriminator = Classifier(
                n_input=model.n_latent, n_hidden=32, n_labels=dataset.n_batches, n_layers=2, logits=True
            )
        self.discriminator = discriminator
        if discriminator is not None:
            discriminator.to(next(model.parameters()).device)

        self.train_set, self.test_set, self.validation_set = self.train_test_validation(
            model, dataset, train_size, test_size, type_class=TotalPosterior
        )
        self.train_set.to_monitor = []
        self.test_set.to_monitor = ["elbo"]
        self.validation_set.to_monitor = ["elbo"]

    def loss(self, tensors) -> torch.Tensor:
        """Mean training loss of a minibatch (see the class docstring)."""
        x, local_l_mean, local_l_var, batch_index, label, y = tensors
        reconst_gene, reconst_protein, kl_z, kl_l_gene, kl_back = self.model(
            x, y, local_l_mean, local_l_var, batch_index, label
        )
        return torch.mean(
            reconst_gene
            + self.pro_recons_weight * reconst_protein
            + self.kl_weight * (kl_z + kl_back)
            + kl_l_gene
        )

    def loss_discriminator(self, z, batch_index, predict_true_class=True, return_details=True) -> torch.Tensor:
        """Cross-entropy of the batch classifier on ``z`` ``(n_cells, n_latent)``.

        With ``predict_true_class=False`` the target is uniform over the *other* batches (the
        loss the generative model minimises to fool the classifier).
        """
        n_classes = self.gene_dataset.n_batches
        log_probs = torch.log_softmax(self.discriminator(z), dim=1)
        target = one_hot(batch_index, n_classes)
        if not predict_true_class:
            target = (1 - target) / (n_classes - 1)
        return -(log_probs * target).sum(dim=1).mean()

    def _get_z(self, tensors) -> torch.Tensor:
        x, _, _, batch_index, _, y = tensors
        return self.model.sample_from_posterior_z(x, y, batch_index, give_mean=False)

    def train(self, n_epochs=500, lr=4e-3, eps=0.01, params=None):
        """Train for ``n_epochs`` epochs with Adam (totalVI defaults: 500 epochs, ``lr=4e-3``)."""
        super().train(n_epochs=n_epochs, lr=lr, eps=eps, params=params)

    def on_training_loop(self, tensors_list):
        """One optimisation step on a minibatch (and a classifier step when adversarial)."""
        tensors = tensors_list[0]
        loss = self.loss(tensors)
        kappa = (1 - self.kl_weight if self.kappa is None else self.kappa) if self.use_adversarial_loss else 0
        if kappa > 0:
            batch_index = tensors[3]
            z = self._get_z(tensors)
            d_loss = kappa * self.loss_discriminator(z.detach(), batch_index, True)
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optimizer.step()
            loss_total = loss + kappa * self.loss_discriminator(z, batch_index, False)
        else:
            loss_total = loss
        self.current_loss = loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss_total.backward()
        self.optimizer.step()

    def training_extras_init(self, lr_d=1e-3, eps=0.01):
        """Set up the classifier's optimiser (adversarial training only)."""
        if self.discriminator is not None:
            self.discriminator.train()
            d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
            self.d_optimizer = torch.optim.Adam(d_params, lr=lr_d, eps=eps)

    def training_extras_end(self):
        """Put the classifier back in evaluation mode."""
        if self.discriminator is not None:
            self.discriminator.eval()
