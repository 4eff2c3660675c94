"""Ported from scVI 0.6.8 ``tests/dataset/test_cite_seq.py`` (MIT licence, Copyright (c) 2020 Romain Lopez, Adam Gayoso, Galen Xing, Yosef Lab).

Unchanged. It runs from a temporary root whose ``tests/data`` is a copy of the legacy fixtures
(``tests/legacy/dataset/conftest.py``); nothing downloads.
"""
from unittest import TestCase

from scvi.dataset import CiteSeqDataset
from .utils import unsupervised_training_one_epoch


class TestCiteSeqDataset(TestCase):
    def test_populate_and_train_one(self):
        for name in ["cbmc", "pbmc"]:
            dataset = CiteSeqDataset(name=name, save_path="tests/data/citeSeq/")
            unsupervised_training_one_epoch(dataset)
