"""Models: likelihoods, distributions, network blocks and the generative models."""
from .classifier import Classifier
from .vae import LDVAE, VAE
from .vaec import VAEC
from .totalvi import TOTALVI
from .scanvi import SCANVI
from .autozivae import AutoZIVAE
from .jvae import JVAE

__all__ = ["VAE", "LDVAE", "VAEC", "Classifier", "TOTALVI", "SCANVI", "AutoZIVAE", "JVAE"]
