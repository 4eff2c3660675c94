"""Ported from scVI 0.6.8 ``tests/dataset/test_smfish.py`` (MIT licence, Copyright (c) 2020 Romain Lopez, Adam Gayoso, Galen Xing, Yosef Lab).

Changed: ``SmfishDataset()`` downloads its file (default ``save_path='data/'``); the class
uses the ``mirror`` fixture (local HTTP server on 127.0.0.1 serving the legacy fixture
``osmFISH_SScortex_mouse_all_cell.loom`` under the original URL). It runs from a temporary root whose ``tests/data`` is a copy of the legacy fixtures
(``tests/legacy/dataset/conftest.py``); nothing downloads.
"""
from unittest import TestCase

import pytest

from scvi.dataset import SmfishDataset
from .utils import unsupervised_training_one_epoch


# ported: the file comes from the local mirror of the original URL (no internet)
@pytest.mark.usefixtures("mirror")
class TestSmfishDataset(TestCase):
    def test_populate(self):
        dataset = SmfishDataset(use_high_level_cluster=False)
        self.assertEqual(dataset.cell_types[0], "Excluded")
        self.assertEqual(dataset.cell_types[1], "Pyramidal L6")

    def test_train_one(self):
        dataset = SmfishDataset(use_high_level_cluster=False)
        unsupervised_training_one_epoch(dataset)
