"""Ported from scVI 0.6.8 ``tests/dataset/test_loom.py`` (MIT licence, Copyright (c) 2020 Romain Lopez, Adam Gayoso, Galen Xing, Yosef Lab).

Unchanged. It runs from a temporary root whose ``tests/data`` is a copy of the legacy fixtures
(``tests/legacy/dataset/conftest.py``); nothing downloads.
"""
from unittest import TestCase

import pytest

from scvi.dataset import (
    LoomDataset,
    RetinaDataset,
    PreFrontalCortexStarmapDataset,
    FrontalCortexDropseqDataset,
)
from .utils import unsupervised_training_one_epoch


class TestLoomDataset(TestCase):
    def test_populate(self):
        dataset = LoomDataset(filename="Cortex.loom", save_path="tests/data")
        unsupervised_training_one_epoch(dataset)


class TestSubDataset(TestCase):
    def test_retina_load_train_one(self):
        dataset = RetinaDataset(save_path="tests/data")
        unsupervised_training_one_epoch(dataset)

    # ported: marked slow (~35 s: the STARmap fixture is the full 3,704-cell dataset)
    @pytest.mark.slow
    def test_pfc_starmap_load_train_one(self):
        gene_dataset = PreFrontalCortexStarmapDataset(save_path="tests/data")
        unsupervised_training_one_epoch(gene_dataset)

    def test_fc_dropseq_load_train_one(self):
        gene_dataset = FrontalCortexDropseqDataset(save_path="tests/data")
        unsupervised_training_one_epoch(gene_dataset)
