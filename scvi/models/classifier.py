"""A fully-connected classifier (used by VAEC and SCANVI, and as totalVI's adversarial discriminator)."""
import logging

import torch
from torch import nn

from .modules import FCLayers

logger = logging.getLogger(__name__)

__all__ = ["Classifier", "FCLayers"]


class Classifier(nn.Module):
    """Fully-connected neural network classifier.

    Parameters
    ----------
    n_input
        Dimensionality of the input.
    n_hidden
        Width of the hidden layers.
    n_labels
        Number of classes.
    n_layers
        Number of hidden layers.
    dropout_rate
        Dropout rate of the hidden layers.
    logits
        Return logits instead of class probabilities.
    """

    def __init__(
        self,
        n_input: int,
        n_hidden: int = 128,
        n_labels: int = 5,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        logits: bool = False,
    ):
        super().__init__()
        layers = [
            FCLayers(
                n_in=n_input,
                n_out=n_hidden,
                n_layers=n_layers,
                n_hidden=n_hidden,
                dropout_rate=dropout_rate,
                use_batch_norm=True,
            ),
            nn.Linear(n_hidden, n_labels),
        ]
        if not logits:
            layers.append(nn.Softmax(dim=-1))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (or logits), shape ``(n, n_labels)``, for inputs of shape ``(n, n_input)``."""
        return self.classifier(x)
