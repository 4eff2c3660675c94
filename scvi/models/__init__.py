"""Models: likelihoods, distributions, network blocks and the generative models."""
