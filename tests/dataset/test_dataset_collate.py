"""collate_fn_builder: indices -> named tuple of tensors, densifying only the minibatch."""
import pickle

import numpy as np
import pytest
import scipy.sparse as sp_sparse
import torch
from torch.utils.data import DataLoader
from torch.utils.data.sampler import BatchSampler, SequentialSampler

from scvi.dataset import CellMeasurement, GeneExpressionDataset
from scvi.dataset._planted import planted_counts
from scvi.dataset.dataset import Minibatch

SPARSE = pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])


def planted_dataset(sparse: bool) -> GeneExpressionDataset:
    planted = planted_counts(n_cells=50, n_genes=20, n_batches=2, n_de_genes=5, sparse=sparse)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(
        planted.X,
        batch_indices=planted.batch_indices,
        labels=planted.labels,
        cell_types=planted.cell_types,
        Ys=[CellMeasurement("protein_expression", np.arange(100).reshape(50, 2), "protein_names", ["a", "b"])],
    )
    return dataset


@SPARSE
def test_default_minibatch_fields_dtypes_and_values(sparse):
    dataset = planted_dataset(sparse)
    indices = np.array([7, 3, 3, 49])
    batch = dataset.collate_fn_builder()(indices)
    assert isinstance(batch, Minibatch)
    assert batch._fields == ("X", "local_means", "local_vars", "batch_indices", "labels")
    dense_X = dataset.X.toarray() if sparse else dataset.X
    np.testing.assert_array_equal(batch.X.numpy(), dense_X[indices])
    np.testing.assert_array_equal(batch.local_means.numpy(), dataset.local_means[indices])
    np.testing.assert_array_equal(batch.labels.numpy(), dataset.labels[indices])
    np.testing.assert_array_equal(batch.batch_indices.numpy(), dataset.batch_indices[indices])
    expected = [(torch.float32, (4, 20)), (torch.float32, (4, 1)), (torch.float32, (4, 1)),
                (torch.int64, (4, 1)), (torch.int64, (4, 1))]
    assert [(t.dtype, tuple(t.shape)) for t in batch] == expected
    x, local_l_mean, local_l_var, batch_index, y = batch  # legacy positional unpacking
    assert x is batch.X and y is batch.labels


def test_dense_and_sparse_minibatches_are_identical():
    dense, sparse = planted_dataset(False), planted_dataset(True)
    indices = list(range(0, 50, 3))
    for a, b in zip(dense.collate_fn_builder()(indices), sparse.collate_fn_builder()(indices)):
        assert torch.equal(a, b)


@SPARSE
def test_added_attributes_and_override(sparse):
    dataset = planted_dataset(sparse)
    batch = dataset.collate_fn_builder({"protein_expression": np.float32})([1, 2])
    assert batch._fields[-1] == "protein_expression"
    assert batch.protein_expression.dtype == torch.float32
    assert batch.protein_expression.tolist() == [[2, 3], [4, 5]]
    only = dataset.collate_fn_builder({"labels": np.int64, "X": np.float32}, override=True)([0])
    assert only._fields == ("labels", "X")


def test_corrupted_minibatch_reads_corrupted_x_as_x():
    dataset = planted_dataset(False)
    dataset.corrupt(rate=1.0, corruption="binomial", random_state=0)
    batch = dataset.collate_fn_builder(corrupted=True)(np.arange(10))
    np.testing.assert_array_equal(batch.X.numpy(), dataset.corrupted_X[:10])
    assert not np.array_equal(batch.X.numpy(), dataset.X[:10])


def test_sparse_collation_densifies_only_the_minibatch(monkeypatch):
    dataset = planted_dataset(True)
    densified = []
    original = sp_sparse.csr_matrix.toarray

    def recording_toarray(self, *args, **kwargs):
        densified.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sp_sparse.csr_matrix, "toarray", recording_toarray)
    dataset.collate_fn_builder()(np.arange(8))
    assert densified == [(8, 20)]
    assert sp_sparse.issparse(dataset.X)


def test_minibatches_with_extra_fields_pickle():
    dataset = planted_dataset(True)
    batch = dataset.collate_fn_builder({"protein_expression": np.float32})([0, 1])
    restored = pickle.loads(pickle.dumps(batch))
    assert restored._fields == batch._fields and torch.equal(restored.protein_expression, batch.protein_expression)
    collate = pickle.loads(pickle.dumps(dataset.collate_fn_builder()))
    assert collate([3]).X.shape == (1, 20)


@SPARSE
def test_dataloader_iterates_over_every_cell_once(sparse):
    dataset = planted_dataset(sparse)
    loader = DataLoader(
        dataset,
        sampler=BatchSampler(SequentialSampler(dataset), batch_size=16, drop_last=False),
        batch_size=None,
        collate_fn=dataset.collate_fn_builder(),
    )
    batches = list(loader)
    assert [b.X.shape[0] for b in batches] == [16, 16, 16, 2]
    total = sum(b.X.sum() for b in batches)
    assert total == pytest.approx(float(dataset.X.sum()))
