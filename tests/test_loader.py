"""Minibatches from dense and CSR matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import special

from scprob.data.loader import CellData, DeviceCSR, MinibatchLoader, train_validation_split


def _data(sparse: bool) -> CellData:
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, (103, 17)).astype(np.float32)
    matrix = sp.csr_matrix(counts) if sparse else counts
    return CellData.from_arrays(matrix, {"categorical": rng.integers(0, 3, (103, 2)),
                                          "continuous": rng.normal(size=(103, 4))})


def test_sparse_and_dense_give_identical_minibatches() -> None:
    dense, sparse = _data(False), _data(True)
    idx = np.arange(103)
    for a, b in zip(MinibatchLoader(dense, idx, 16, shuffle=True, seed=3),
                    MinibatchLoader(sparse, idx, 16, shuffle=True, seed=3), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_sparse_counts_are_never_densified_whole() -> None:
    data = _data(True)
    assert sp.issparse(data.counts) and data.counts.dtype == np.float32


def test_every_training_cell_is_served_once_per_epoch() -> None:
    data = _data(False)
    loader = MinibatchLoader(data, np.arange(103), 10, shuffle=True, seed=0)
    seen = torch.cat([b["x"] for b in loader])
    # 103 = 10 × 10 + 3: the last batch of 3 is kept (>= min_last_batch).
    assert seen.shape[0] == 103
    assert torch.equal(seen.sum(0), data.counts.sum(0))


def test_seeded_shuffle_differs_between_epochs_and_repeats_across_loaders() -> None:
    data = _data(False)
    first = MinibatchLoader(data, np.arange(103), 103, shuffle=True, seed=1)
    second = MinibatchLoader(data, np.arange(103), 103, shuffle=True, seed=1)
    epoch_0, epoch_1 = next(iter(first))["x"], next(iter(first))["x"]
    assert not torch.equal(epoch_0, epoch_1)
    assert torch.equal(epoch_0, next(iter(second))["x"])


def test_tiny_trailing_batch_is_dropped_in_training_only() -> None:
    data = _data(False)
    assert len(MinibatchLoader(data, np.arange(101), 10, shuffle=True)) == 10
    assert len(MinibatchLoader(data, np.arange(101), 10, shuffle=False)) == 11


def test_split_is_seeded_and_disjoint() -> None:
    train, validation = train_validation_split(1000, 0.9, seed=5)
    assert len(train) == 900 and len(validation) == 100
    assert not set(train) & set(validation)
    assert np.array_equal(train, train_validation_split(1000, 0.9, seed=5)[0])
    with pytest.raises(ValueError, match=r"train_size must be in \(0, 1\], got 1.5"):
        train_validation_split(10, 1.5)


def _counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.5, (57, 23)) * (rng.random((57, 23)) < 0.5)
    counts[3] = 0  # an empty row
    counts[4, 2] = 2_000_000  # beyond the lookup table
    return counts.astype(np.float32)


@pytest.mark.parametrize("sparse", [True, False])
def test_loader_serves_each_cells_log_factorial(sparse: bool) -> None:
    counts = _counts()
    matrix = sp.csr_matrix(counts) if sparse else counts
    data = CellData.from_arrays(matrix, {"categorical": np.zeros((57, 1))})
    expected = special.gammaln(counts.astype(np.float64) + 1.0).sum(axis=1)
    np.testing.assert_allclose(data.log_factorial.numpy(), expected, rtol=1e-6)
    batch = next(iter(MinibatchLoader(data, np.arange(57), 16, shuffle=True, seed=2)))
    order = MinibatchLoader(data, np.arange(57), 16, shuffle=True, seed=2).order(0)[:16]
    np.testing.assert_allclose(batch["log_factorial"].numpy(), expected[order], rtol=1e-6)


def test_device_csr_gathers_the_same_rows_as_scipy() -> None:
    counts = _counts(1)
    matrix = sp.csr_matrix(counts)
    gathered = DeviceCSR(matrix, "cpu").rows(torch.tensor([5, 3, 0, 56, 5]))
    np.testing.assert_array_equal(gathered.numpy(), counts[[5, 3, 0, 56, 5]])


def test_loader_over_device_csr_serves_the_same_batches() -> None:
    counts = _counts(2)
    host = CellData.from_arrays(sp.csr_matrix(counts), {"categorical": np.arange(57)[:, None] % 3,
                                                        "continuous": np.zeros((57, 0))})
    gathered = CellData(DeviceCSR(host.counts, "cpu"), host.values, host.log_factorial)
    for a, b in zip(MinibatchLoader(host, np.arange(57), 10, shuffle=True, seed=4),
                    MinibatchLoader(gathered, np.arange(57), 10, shuffle=True, seed=4),
                    strict=True):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_on_device_is_the_identity_on_the_cpu() -> None:
    data = CellData.from_arrays(sp.csr_matrix(_counts()), {"categorical": np.zeros((57, 1))})
    assert data.on_device("cpu") is data


@pytest.mark.parametrize("sparse", [True, False])
def test_select_genes_keeps_the_cells_and_values_and_recounts_log_factorial(sparse) -> None:
    counts = np.array([[0, 3, 1, 5], [2, 0, 4, 1], [1, 1, 0, 7]], dtype=np.float32)
    data = CellData.from_arrays(sp.csr_matrix(counts) if sparse else counts,
                                {"size_factor": np.array([1.0, 2.0, 0.5])})
    selected = data.select_genes(np.array([3, 1]))
    assert selected.is_sparse == sparse
    batch = selected.rows(np.array([2, 0]))
    np.testing.assert_array_equal(batch["x"].numpy(), counts[[2, 0]][:, [3, 1]])
    np.testing.assert_array_equal(batch["size_factor"].numpy(), [0.5, 1.0])
    expected = special.gammaln(counts[:, [3, 1]] + 1).sum(1)
    np.testing.assert_allclose(selected.log_factorial.numpy(), expected, rtol=1e-6)
