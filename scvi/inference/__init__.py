"""Inference: the training loop (Trainer and its subclasses) and Posterior objects."""
from .posterior import Posterior
from .trainer import Trainer
from .inference import AdapterTrainer, UnsupervisedTrainer
from .posterior_utils import load_posterior
from .total_inference import TotalPosterior, TotalTrainer
from .annotation import (  # noqa: E402
    AlternateSemiSupervisedTrainer,
    ClassifierTrainer,
    JointSemiSupervisedTrainer,
    SemiSupervisedTrainer,
)
from .jvae_trainer import JVAETrainer  # noqa: E402
