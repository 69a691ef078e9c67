"""Minibatches straight from a dense or CSR count matrix.

No per-batch AnnData views and no ``torch.utils.data.Dataset`` of single cells: a batch is
one fancy-index of the matrix (``x[idx]``), densified only for those rows. The
categorical codes and continuous covariates are held as tensors, so serving them is an
``index_select``. Shuffling draws one permutation per epoch from a generator seeded with
``(seed, epoch)``: the same seed gives the same batches, whatever ran before.

Every batch also carries ``"log_factorial"``, each cell's ``Σ_g log x_ng!``: the constant
of every count likelihood, which a reported ELBO must include but no gradient needs. It is
computed once per data set from the stored nonzero counts, so a training step does not
spend an ``lgamma`` on each matrix entry for it.

On an accelerator the data can live on the device (:meth:`CellData.on_device`): dense
counts whole when they fit, else the CSR arrays, gathered into dense minibatches there, so
that a step never waits on the host.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy import special
from torch import Tensor

Batch = dict[str, Tensor]

# Rows per block when a derived quantity (log x!) or a device copy is built from the counts:
# bounds the host memory of those passes whatever the matrix size.
_BLOCK_ROWS = 8192
# Share of the free accelerator memory that dense counts may take before the CSR arrays
# are kept instead: the rest is for the model, its activations and the optimizer.
_DEVICE_DENSE_FRACTION = 0.5


class DeviceCSR:
    """A CSR count matrix as torch tensors on any device, serving dense row blocks.

    ``rows(idx)`` gathers without host synchronisation: every selected row is read
    through a window of ``max_row_nnz`` stored entries (the longest row of the matrix),
    entries past a row's end are masked to zero and scatter-added onto column 0, where
    adding zero changes nothing. The work is ``O(batch × max_row_nnz)``, at most the size
    of the dense minibatch itself.
    """

    def __init__(self, matrix: sp.csr_matrix, device: torch.device | str) -> None:
        self.shape = matrix.shape
        self.dtype = torch.float32
        self.device = torch.device(device)
        self.indptr = torch.as_tensor(matrix.indptr.astype(np.int64), device=device)
        self.indices = torch.as_tensor(matrix.indices.astype(np.int64), device=device)
        self.data = torch.as_tensor(matrix.data, dtype=torch.float32, device=device)
        row_nnz = np.diff(matrix.indptr)
        self.max_row_nnz = int(row_nnz.max()) if len(row_nnz) else 0
        self._window = torch.arange(max(self.max_row_nnz, 1), device=device)

    def rows(self, index: Tensor) -> Tensor:
        """Dense ``(len(index), n_genes)`` float32 rows."""
        start = self.indptr[index].unsqueeze(1)
        length = self.indptr[index + 1].unsqueeze(1) - start
        position = start + self._window
        inside = self._window < length
        position = torch.where(inside, position, torch.zeros_like(position))
        columns = torch.where(inside, self.indices[position], torch.zeros_like(position))
        values = torch.where(inside, self.data[position], torch.zeros((), device=self.device))
        out = torch.zeros(index.shape[0], self.shape[1], device=self.device)
        return out.scatter_add_(1, columns, values)


@dataclass
class CellData:
    """Per-cell model inputs.

    ``counts``: ``(n_cells, n_genes)`` float32 tensor, float32 CSR matrix, or a
    :class:`DeviceCSR`; ``values``: the other per-cell tensors by field name
    (``"categorical"`` int64 codes ``(n_cells, n_columns)``, ``"continuous"`` float32
    ``(n_cells, n_continuous)``, ``"protein"``…), served under those names.
    """

    counts: Tensor | sp.csr_matrix | DeviceCSR
    values: dict[str, Tensor] = field(default_factory=dict)
    _log_factorial: Tensor | None = field(default=None, repr=False)

    @classmethod
    def from_arrays(
        cls, counts: np.ndarray | sp.spmatrix, values: dict[str, np.ndarray | Tensor] | None = None
    ) -> CellData:
        """Counts as float32 (CSR stays CSR), floating values as float32, codes as int64."""
        if sp.issparse(counts):
            csr = sp.csr_matrix(counts)
            # One integer type for both index arrays: scipy's row indexing otherwise
            # converts the larger one on every minibatch, a pass over all stored entries
            # (int64 indptr beside int32 indices is how h5ad files often hold them).
            index_dtype = np.int32 if max(csr.nnz, *csr.shape) < 2**31 else np.int64
            if (csr.dtype != np.float32 or csr.indices.dtype != index_dtype
                    or csr.indptr.dtype != index_dtype):
                # Only the stored values and indices are converted, never a dense copy.
                csr = sp.csr_matrix(
                    (csr.data.astype(np.float32, copy=False),
                     csr.indices.astype(index_dtype, copy=False),
                     csr.indptr.astype(index_dtype, copy=False)), shape=csr.shape, copy=False)
            matrix: Tensor | sp.csr_matrix = csr
        else:
            matrix = torch.as_tensor(np.ascontiguousarray(counts, dtype=np.float32))
        tensors = {}
        for name, v in (values or {}).items():
            t = torch.as_tensor(v)
            tensors[name] = t.float() if t.is_floating_point() else t.long()
        return cls(counts=matrix, values=tensors)

    def __len__(self) -> int:
        return self.counts.shape[0]

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.counts)

    @property
    def device(self) -> torch.device:
        """Where minibatches are cut (the per-cell values'; CSR counts stay on the host)."""
        if self.values:
            return next(iter(self.values.values())).device
        if isinstance(self.counts, DeviceCSR):
            return self.counts.device
        return torch.device("cpu") if self.is_sparse else self.counts.device

    @property
    def log_factorial(self) -> Tensor:
        """``Σ_g log x_ng!`` per cell, ``(n_cells,)`` float32, summed in float64 over the
        stored counts, block by block."""
        if self._log_factorial is None:
            if isinstance(self.counts, DeviceCSR):
                raise ValueError("log_factorial must be computed before the move to a device.")
            sums = np.empty(len(self), dtype=np.float64)
            # About a million entries per block: buffers that the allocator recycles
            # instead of mapping fresh pages for each.
            n_entries = self.counts.nnz if self.is_sparse else self.counts.numel()
            block_rows = max(1, (len(self) << 20) // max(n_entries, 1))
            for start in range(0, len(self), block_rows):
                stop = min(start + block_rows, len(self))
                if self.is_sparse:
                    # Row sums of the stored entries as differences of one running sum.
                    first, last = self.counts.indptr[start], self.counts.indptr[stop]
                    per_entry = _log_factorial_of_counts(self.counts.data[first:last])
                    running = np.concatenate([[0.0], np.cumsum(per_entry)])
                    ends = self.counts.indptr[start : stop + 1] - first
                    sums[start:stop] = running[ends[1:]] - running[ends[:-1]]
                else:
                    # Only counts above 1 add to log x!, a minority of any count matrix.
                    block = self.counts[start:stop].cpu().numpy()
                    rows, columns = np.nonzero(block > 1)
                    per_entry = _log_factorial_of_counts(block[rows, columns])
                    sums[start:stop] = np.bincount(rows, weights=per_entry,
                                                   minlength=stop - start)
            self._log_factorial = torch.as_tensor(sums, dtype=torch.float32)
        return self._log_factorial

    def rows(self, idx: np.ndarray | Tensor) -> Batch:
        """The minibatch of cells ``idx`` ``(batch_size,)`` as dense tensors, on the
        device of the data (``idx`` may be a tensor on that device)."""
        if self.is_sparse:
            idx = idx.cpu().numpy() if isinstance(idx, Tensor) else idx
            x = torch.from_numpy(self.counts[idx].toarray())
        index = idx if isinstance(idx, Tensor) else torch.from_numpy(idx)
        if isinstance(self.counts, DeviceCSR):
            x = self.counts.rows(index)
        elif not self.is_sparse:
            x = self.counts[index]
        batch: Batch = {name: values[index] for name, values in self.values.items()}
        batch["x"] = x
        batch["log_factorial"] = self.log_factorial[index]
        return batch

    def select_genes(self, index: np.ndarray) -> CellData:
        """The same cells with only the count columns ``index`` (host counts only), so a
        model that reads a few genes does not densify every gene of each minibatch."""
        if isinstance(self.counts, DeviceCSR):
            raise ValueError("select genes before the move to a device.")
        index = np.asarray(index, dtype=np.int64)
        counts = (sp.csr_matrix(self.counts[:, index]) if self.is_sparse
                  else self.counts[:, torch.from_numpy(index)].contiguous())
        return CellData.from_arrays(counts, self.values)

    def to(self, device: torch.device | str) -> CellData:
        """A copy held on ``device`` (dense counts only; CSR stays on the host)."""
        move = lambda t: t.to(device)  # noqa: E731
        counts = self.counts if self.is_sparse else move(self.counts)
        return CellData(counts, {k: move(v) for k, v in self.values.items()},
                        move(self.log_factorial))

    def on_device(self, device: torch.device | str, dense_bytes_limit: int | None = None
                  ) -> CellData:
        """A copy whose every array lives on ``device``, built without a dense host copy.

        Dense counts go as they are. CSR counts are densified on the device, block by
        block, when the dense matrix takes at most ``dense_bytes_limit`` (default: half of
        the device's free memory); otherwise the CSR arrays move and minibatches are
        gathered there (:class:`DeviceCSR`). On the CPU this returns ``self``.
        """
        device = torch.device(device)
        if device.type == "cpu":
            return self
        log_factorial = self.log_factorial.to(device)
        move = lambda t: t.to(device)  # noqa: E731
        if isinstance(self.counts, DeviceCSR):
            counts: Tensor | DeviceCSR = self.counts
        elif not self.is_sparse:
            counts = move(self.counts)
        else:
            n_cells, n_genes = self.counts.shape
            if dense_bytes_limit is None:
                dense_bytes_limit = int(_DEVICE_DENSE_FRACTION * _free_device_memory(device))
            if 4 * n_cells * n_genes <= dense_bytes_limit:
                counts = torch.empty(n_cells, n_genes, device=device)
                for start in range(0, n_cells, _BLOCK_ROWS):
                    stop = min(start + _BLOCK_ROWS, n_cells)
                    block = torch.from_numpy(self.counts[start:stop].toarray())
                    counts[start:stop] = block.to(device)
            else:
                counts = DeviceCSR(self.counts, device)
        return CellData(counts, {k: move(v) for k, v in self.values.items()}, log_factorial)


def _log_factorial_of_counts(values: np.ndarray) -> np.ndarray:
    """``log x!`` (float64) of non-negative integer counts: a table lookup for counts up to
    a million (one ``gammaln`` per distinct value instead of one per entry)."""
    largest = int(values.max()) if values.size else 0
    if largest <= 1_000_000:
        table = special.gammaln(np.arange(largest + 1, dtype=np.float64) + 1.0)
        return table[values.astype(np.int64)]
    return special.gammaln(values.astype(np.float64) + 1.0)


def _free_device_memory(device: torch.device) -> int:
    """Free bytes on an accelerator; 0 where torch cannot tell (keeps data compact)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return 0


class MinibatchLoader:
    """Iterates over ``indices`` in minibatches of ``batch_size`` cells.

    In training (``shuffle=True``) a trailing batch of fewer than ``min_last_batch`` cells
    is dropped: batch norm cannot normalise a single cell, and two cells give a
    degenerate estimate.

    The permutation of an epoch is drawn on the host (the same for every device); when the
    data live on an accelerator (:meth:`place_on`) it is sent there once per epoch and the
    minibatches are cut from it there.
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
        self.host_data = data
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

    def place_on(self, data: CellData) -> None:
        """Serve from ``data`` (the same cells, e.g. :meth:`CellData.on_device` of the
        original); ``place_on(loader.host_data)`` goes back."""
        if len(data) != len(self.host_data):
            raise ValueError(
                f"the replacement data hold {len(data)} cells, the loader's {len(self.host_data)}."
            )
        self.data = data

    def __iter__(self) -> Iterator[Batch]:
        order: np.ndarray | Tensor = self.order(self.epoch)
        self.epoch += 1
        if self.data.device.type != "cpu":
            order = torch.as_tensor(order, device=self.data.device)
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
