"""Ported from scVI 0.6.8 ``tests/dataset/test_seqfishplus.py`` (MIT licence, Copyright (c) 2020 Romain Lopez, Adam Gayoso, Galen Xing, Yosef Lab).

Unchanged. It runs from a temporary root whose ``tests/data`` is a copy of the legacy fixtures
(``tests/legacy/dataset/conftest.py``); nothing downloads.
"""
from unittest import TestCase

from scvi.dataset import SeqFishPlusDataset
from .utils import unsupervised_training_one_epoch


class TestSeqFishPlusDataset(TestCase):
    def test_populate(self):
        for tissue_region in ["subventricular cortex", "olfactory bulb"]:
            dataset = SeqFishPlusDataset(
                tissue_region=tissue_region, save_path="tests/data"
            )
            unsupervised_training_one_epoch(dataset)
