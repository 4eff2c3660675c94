"""Helpers imported by the tutorial notebooks (``notebooks.utils.gimvi_tutorial``, as in scVI 0.6)."""
