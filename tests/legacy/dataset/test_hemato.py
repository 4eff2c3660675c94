"""Ported from scVI 0.6.8 ``tests/dataset/test_hemato.py`` (MIT licence, Copyright (c) 2020 Romain Lopez, Adam Gayoso, Galen Xing, Yosef Lab).

Unchanged. It runs from a temporary root whose ``tests/data`` is a copy of the legacy fixtures
(``tests/legacy/dataset/conftest.py``); nothing downloads.
"""
from unittest import TestCase

from scvi.dataset import HematoDataset
from .utils import unsupervised_training_one_epoch


class TestHematoDataset(TestCase):
    def test_populate(self):
        dataset = HematoDataset(save_path="tests/data/HEMATO")
        unsupervised_training_one_epoch(dataset)
