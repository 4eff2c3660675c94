"""Datasets: the GeneExpressionDataset container, AnnData conversion, synthetic and built-in loaders."""
