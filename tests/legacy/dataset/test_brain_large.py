"""Ported from scVI 0.6.8 ``tests/dataset/test_brain_large.py`` (MIT licence, Copyright (c) 2020 Romain Lopez, Adam Gayoso, Galen Xing, Yosef Lab).

Unchanged. It runs from a temporary root whose ``tests/data`` is a copy of the legacy fixtures
(``tests/legacy/dataset/conftest.py``); nothing downloads.
"""
from unittest import TestCase

from scvi.dataset import BrainLargeDataset
from .utils import unsupervised_training_one_epoch


class TestBrainLargeDataset(TestCase):
    def test_populate(self):
        dataset = BrainLargeDataset(
            save_path="tests/data",
            sample_size_gene_var=10,
            nb_genes_to_keep=10,
            max_cells_to_keep=128,
        )
        unsupervised_training_one_epoch(dataset)
