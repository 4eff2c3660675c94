"""Inference: the training loop (Trainer and its subclasses) and Posterior objects."""
