"""Minibatches straight from a dense or CSR count matrix.

No per-batch AnnData views and no ``torch.utils.data.Dataset`` of single cells: a batch is
one fancy-index of the matrix (``x[idx]``), densified only for those rows. The
categorical codes and continuous covariates are held as tensors, so serving them is an
``index_select``. Shuffling draws one permutation per epoch from a generator seeded with
``(seed, epoch)``: the same seed gives the same batches, whatever ran before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

Batch = dict[str, Tensor]


@dataclass
class CellData:
    """Per-cell model inputs.

    ``counts``: ``(n_cells, n_genes)`` float32 tensor or float32 CSR matrix;
    ``cat``: ``(n_cells, n_categorical)`` int64 codes (the batch is column 0);
    ``cont``: ``(n_cells, n_continuous)`` float32; ``extras``: more per-cell tensors
    (e.g. ``"protein"``, ``(n_cells, n_proteins)``).
    """

    counts: Tensor | sp.csr_matrix
    cat: Tensor
    cont: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def from_arrays(
        cls,
        counts: np.ndarray | sp.spmatrix,
        cat: np.ndarray,
        cont: np.ndarray,
        extras: dict[str, Tensor] | None = None,
    ) -> CellData:
        if sp.issparse(counts):
            csr = sp.csr_matrix(counts)
            if csr.dtype != np.float32:
                # Only the stored values are converted, never a dense copy.
                csr = sp.csr_matrix(
                    (csr.data.astype(np.float32), csr.indices, csr.indptr), shape=csr.shape
                )
            matrix: Tensor | sp.csr_matrix = csr
        else:
            matrix = torch.as_tensor(np.ascontiguousarray(counts, dtype=np.float32))
        return cls(
            counts=matrix,
            cat=torch.as_tensor(np.asarray(cat, dtype=np.int64)),
            cont=torch.as_tensor(np.asarray(cont, dtype=np.float32)),
            extras=dict(extras or {}),
        )

    def __len__(self) -> int:
        return self.counts.shape[0]

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.counts)

    def rows(self, idx: np.ndarray) -> Batch:
        """The minibatch of cells ``idx`` ``(batch_size,)`` as dense tensors."""
        if self.is_sparse:
            x = torch.from_numpy(self.counts[idx].toarray())
        else:
            x = self.counts[torch.from_numpy(idx)]
        index = torch.from_numpy(idx)
        batch: Batch = {"x": x, "cat": self.cat[index], "cont": self.cont[index]}
        for name, values in self.extras.items():
            batch[name] = values[index]
        return batch

    def to(self, device: torch.device | str) -> CellData:
        """A copy held on ``device`` (dense counts only; CSR stays on the host)."""
        move = lambda t: t.to(device)  # noqa: E731
        counts = self.counts if self.is_sparse else move(self.counts)
        return CellData(counts, move(self.cat), move(self.cont),
                        {k: move(v) for k, v in self.extras.items()})


class MinibatchLoader:
    """Iterates over ``indices`` in minibatches of ``batch_size`` cells.

    In training (``shuffle=True``) a trailing batch of fewer than ``min_last_batch`` cells
    is dropped: batch norm cannot normalise a single cell, and two cells give a
    degenerate estimate.
    """

    def __init__(
        self,
        data: CellData,
        indices: np.ndarray,
        batch_size: int = 128,
        shuffle: bool = False,
        seed: int = 0,
        min_last_batch: int = 3,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.min_last_batch = min_last_batch if shuffle else 1
        self.epoch = 0

    def __len__(self) -> int:
        n_full, rest = divmod(len(self.indices), self.batch_size)
        return n_full + (1 if rest >= self.min_last_batch else 0)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        rng = np.random.default_rng([self.seed, epoch])
        return self.indices[rng.permutation(len(self.indices))]

    def __iter__(self) -> Iterator[Batch]:
        order = self.order(self.epoch)
        self.epoch += 1
        for b in range(len(self)):
            yield self.data.rows(order[b * self.batch_size : (b + 1) * self.batch_size])


def train_validation_split(
    n_cells: int, train_size: float = 0.9, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random split of ``range(n_cells)`` into training and validation indices (sorted)."""
    if not 0.0 < train_size <= 1.0:
        raise ValueError(f"train_size must be in (0, 1], got {train_size}.")
    n_train = math.ceil(train_size * n_cells)
    permutation = np.random.default_rng(seed).permutation(n_cells)
    return np.sort(permutation[:n_train]), np.sort(permutation[n_train:])
