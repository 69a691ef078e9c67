"""The AnnData fields a model reads, each validated once and served per cell.

A model declares a list of fields in ``setup_anndata``. Each field validates what the user
named, records what is needed to read the same data again (gene names, category order,
protein panel…) as JSON, extracts its per-cell values for the loader, checks that another
AnnData can be read the same way (``load``), and aligns a query to the reference for
scArches (``load_query_data``). The registry (``scprob.data.registry``) only strings fields
together: it knows no modality.

A field's values reach the module under its ``name`` in every minibatch: ``"x"`` (counts,
``(n, n_genes)``), ``"categorical"`` (codes ``(n, n_columns)``, the batch first),
``"continuous"`` ``(n, n_continuous)``, ``"protein"`` ``(n, n_proteins)``, ``"labels"``
``(n,)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

# Cells without a batch column all belong to one batch of this name.
DEFAULT_BATCH = "batch_0"
BATCH_COLUMN = "_batch"
CellValues = np.ndarray | sp.csr_matrix


# ------------------------------------------------------------------ shared validation


def first_bad_entry(values: np.ndarray) -> int | None:
    """Flat index of the first entry that is not a finite non-negative integer."""
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    return int(np.argmax(bad)) if bad.any() else None


def first_bad_cell(values: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first entry of a matrix ``(n_rows, n_columns)`` that is not a
    finite non-negative integer, for an error that names the cell and the feature."""
    flat = first_bad_entry(values.ravel())
    return None if flat is None else divmod(flat, values.shape[1])


def require_unique(names: Sequence[str], what: str, fix: str) -> None:
    duplicated = pd.Index(names).duplicated()
    if duplicated.any():
        repeated = sorted({names[i] for i in np.flatnonzero(duplicated)})
        raise ValueError(
            f"the {what} are not unique ({repeated[:3]} occur more than once): {fix}."
        )


def require_obs_column(adata: AnnData, key: str, role: str) -> pd.Series:
    if key not in adata.obs.columns:
        available = ", ".join(map(repr, list(adata.obs.columns)[:10]))
        raise ValueError(
            f"{role} {key!r} is not a column of adata.obs (available: {available or 'none'}). "
            "Add the column to adata.obs or pass the name of an existing one."
        )
    return adata.obs[key]


def categorical_values(adata: AnnData, key: str, role: str) -> pd.Series:
    values = require_obs_column(adata, key, role)
    missing = values.isna().to_numpy()
    if missing.any():
        first = adata.obs_names[int(np.argmax(missing))]
        raise ValueError(
            f"{role} {key!r} is missing (NaN) for {int(missing.sum())} cells, first "
            f"{first!r}. Fill the missing values (e.g. with an 'unknown' category) or "
            "drop those cells."
        )
    return values.astype(str)


def present_categories(adata: AnnData, key: str, role: str) -> list[str]:
    """The categories of ``adata.obs[key]`` that occur in its cells, in the column's
    categorical order (sorted for a non-categorical column)."""
    values = categorical_values(adata, key, role)
    original = adata.obs[key]
    if isinstance(original.dtype, pd.CategoricalDtype):
        present = set(values)
        return [str(c) for c in original.cat.categories if str(c) in present]
    return sorted(set(values))


def _lookup(container: Any, key: str, role: str, where: str, fix: str) -> Any:
    if key not in container:
        raise ValueError(f"{role} {key!r} is not in {where} (available: "
                         f"{sorted(container)}). {fix}")
    return container[key]


def _key_list(keys: Sequence[str] | str | None, role: str) -> list[str]:
    keys = [] if keys is None else ([keys] if isinstance(keys, str) else list(keys))
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"{role} lists {duplicates} more than once: name each key once.")
    return keys


def aligned_columns(matrix: CellValues, source: list[str], target: list[str]) -> sp.csr_matrix:
    """``matrix`` ``(n_cells, len(source))`` with its columns reordered to ``target``; a
    target column absent from ``source`` is all zeros. Multiplying by a 0/1 selection
    matrix moves each count once, so integer counts stay exact."""
    position = pd.Index(source).get_indexer(target)
    found = np.flatnonzero(position >= 0)
    selection = sp.csr_matrix(
        (np.ones(len(found), dtype=np.float32), (position[found], found)),
        shape=(len(source), len(target)),
    )
    return sp.csr_matrix(sp.csr_matrix(matrix, dtype=np.float32) @ selection)


# ------------------------------------------------------------------------ the base class


@dataclass
class Field:
    """One part of an AnnData that a model reads. Subclasses hold their settings and, once
    registered, their state, all JSON-serialisable."""

    name: ClassVar[str]

    def register(self, adata: AnnData, fields: dict[str, Field]) -> None:
        """Validate the user's data and record the state (``fields``: those before it)."""

    def extract(self, adata: AnnData, fields: dict[str, Field]) -> CellValues:
        """Per-cell values, ``(n_cells, …)``; raises if ``adata`` cannot be read this way."""
        raise NotImplementedError

    def align(self, query: AnnData, aligned: AnnData) -> None:
        """Copy this field of ``query`` into ``aligned`` in the reference's layout."""

    def extend(self, aligned: AnnData, fields: dict[str, Field]) -> Field:
        """This field for a query model (``fields``: the query's fields before it)."""
        return self

    def module_inputs(self) -> dict[str, Any]:
        """Sizes a module takes from this field, by argument name."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"field": type(self).__name__, **asdict(self)}


# --------------------------------------------------------------------------- the fields


@dataclass
class CountsField(Field):
    """Raw counts ``(n_cells, n_genes)`` in ``adata.X`` or ``adata.layers[layer]``."""

    name: ClassVar[str] = "x"
    layer: str | None = None
    gene_names: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return "adata.X" if self.layer is None else f"adata.layers[{self.layer!r}]"

    def matrix(self, adata: AnnData) -> CellValues:
        x = adata.X if self.layer is None else _lookup(
            adata.layers, self.layer, "layer", "adata.layers",
            "Pass layer=None to use adata.X, or the name of the layer holding raw counts.")
        if sp.issparse(x):
            return x.tocsr() if x.format != "csr" else x
        if isinstance(x, np.ndarray):
            return x
        raise ValueError(
            f"counts of type {type(x).__name__} are not supported: pass a numpy array or a "
            "scipy sparse matrix (load backed AnnData into memory with adata.to_memory())."
        )

    def validate(self, adata: AnnData) -> CellValues:
        """Counts must be a non-empty matrix of finite, non-negative integers, with unique
        gene and cell names."""
        if adata.n_obs == 0 or adata.n_vars == 0:
            raise ValueError(
                f"{self.where} is empty ({adata.n_obs} cells × {adata.n_vars} genes): a "
                "model needs at least one cell and one gene; check the filtering that "
                "produced it."
            )
        require_unique([str(g) for g in adata.var_names], "gene names (adata.var_names)",
                       "make them unique first, e.g. adata.var_names_make_unique()")
        require_unique([str(c) for c in adata.obs_names], "cell names (adata.obs_names)",
                       "make them unique first, e.g. adata.obs_names_make_unique()")
        x = self.matrix(adata)
        values = x.data if sp.issparse(x) else np.asarray(x).ravel()
        flat = first_bad_entry(values)
        if flat is None:
            return x
        if sp.issparse(x):
            row, col = int(np.searchsorted(x.indptr, flat, side="right") - 1), int(x.indices[flat])
        else:
            row, col = divmod(flat, adata.n_vars)
        value = values[flat]
        kind = "negative" if value < 0 else (
            "not finite" if not np.isfinite(value) else "not an integer")
        raise ValueError(
            f"{self.where} must hold raw counts (non-negative integers), but the value "
            f"{value!r} of cell {adata.obs_names[row]!r}, gene {adata.var_names[col]!r} is "
            f"{kind}. Pass the layer with raw counts (layer=...), not normalised or "
            "log-transformed values."
        )

    def register(self, adata: AnnData, fields: dict[str, Field]) -> None:
        self.validate(adata)
        self.gene_names = [str(g) for g in adata.var_names]

    def check_genes(self, adata: AnnData) -> None:
        genes = [str(g) for g in adata.var_names]
        if genes == self.gene_names:
            return
        expected, observed = set(self.gene_names), set(genes)
        missing, extra = sorted(expected - observed), sorted(observed - expected)
        if not missing and not extra:
            detail = "the same genes in a different order"
        else:
            detail = (f"{len(missing)} genes missing (e.g. {missing[:3]}), "
                      f"{len(extra)} unexpected (e.g. {extra[:3]})")
        raise ValueError(
            f"the genes of this AnnData differ from the model's ({len(self.gene_names)} "
            f"genes): {detail}. Subset and order them as the model's: "
            "adata[:, model.registry.gene_names]; for new data with other genes, use "
            "load_query_data."
        )

    def extract(self, adata: AnnData, fields: dict[str, Field]) -> CellValues:
        self.check_genes(adata)
        return self.validate(adata)

    def aligned_counts(self, query: AnnData, min_gene_overlap: float) -> sp.csr_matrix:
        """The query's counts in the reference's gene order: a missing gene is zeros (with a
        warning), an extra one is dropped (with a warning)."""
        if not 0.0 < min_gene_overlap <= 1.0:
            raise ValueError(f"min_gene_overlap must be in (0, 1], got {min_gene_overlap}.")
        counts = self.validate(query)
        query_genes = [str(g) for g in query.var_names]
        n_shared = len(set(query_genes) & set(self.gene_names))
        n_reference = len(self.gene_names)
        if n_shared < min_gene_overlap * n_reference:
            raise ValueError(
                f"the query shares {n_shared} of the reference's {n_reference} genes "
                f"({n_shared / n_reference:.0%}), fewer than min_gene_overlap="
                f"{min_gene_overlap:.0%}: check that both use the same gene identifiers "
                "(symbols vs Ensembl IDs), or lower min_gene_overlap."
            )
        n_missing, n_extra = n_reference - n_shared, len(query_genes) - n_shared
        if n_missing:
            warnings.warn(f"{n_missing} of the reference's {n_reference} genes are missing "
                          "from the query; they are filled with zero counts.", UserWarning,
                          stacklevel=5)
        if n_extra:
            warnings.warn(f"{n_extra} of the query's {len(query_genes)} genes are not among "
                          "the reference's and are dropped.", UserWarning, stacklevel=5)
        return aligned_columns(counts, query_genes, self.gene_names)


@dataclass
class CategoricalField(Field):
    """The batch and other categorical covariates: codes ``(n_cells, n_columns)``, the
    batch in column 0. Categories keep the column's categorical order (else sorted);
    ``n_reference`` counts those a reference model owns (a query's follow)."""

    name: ClassVar[str] = "categorical"
    batch_key: str | None = None
    covariate_keys: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    n_reference: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.covariate_keys = _key_list(self.covariate_keys, "categorical_covariate_keys")
        if self.batch_key is not None and self.batch_key in self.covariate_keys:
            raise ValueError(
                f"{self.batch_key!r} is both batch_key and a categorical covariate: name it "
                "once."
            )

    @property
    def batch_column(self) -> str:
        return self.batch_key if self.batch_key is not None else BATCH_COLUMN

    @property
    def columns(self) -> list[str]:
        return [self.batch_column, *self.covariate_keys]

    def role(self, column: str) -> str:
        return "batch_key" if column == self.batch_key else "categorical covariate"

    def _present(self, adata: AnnData, column: str) -> list[str]:
        if column == BATCH_COLUMN:
            return [DEFAULT_BATCH]
        return present_categories(adata, column, self.role(column))

    def register(self, adata: AnnData, fields: dict[str, Field]) -> None:
        self.categories = {c: self._present(adata, c) for c in self.columns}
        self.n_reference = {c: len(v) for c, v in self.categories.items()}

    def extract(self, adata: AnnData, fields: dict[str, Field]) -> np.ndarray:
        codes = np.zeros((adata.n_obs, len(self.columns)), dtype=np.int64)
        for j, column in enumerate(self.columns):
            if column == BATCH_COLUMN:
                continue
            values = categorical_values(adata, column, self.role(column))
            index = pd.Index(self.categories[column]).get_indexer(values)
            if (index < 0).any():
                unseen = sorted(set(values[index < 0]))
                raise ValueError(
                    f"{self.role(column)} {column!r} has categories the model has not seen: "
                    f"{unseen[:5]}. A trained model can only read its own categories; "
                    "integrate new batches with Model.load_query_data(adata, reference_model)."
                )
            codes[:, j] = index
        return codes

    def extend(self, aligned: AnnData, fields: dict[str, Field]) -> CategoricalField:
        """The query's new categories appended after the reference's, so shared ones keep
        their codes."""
        categories = {}
        for column, known in self.categories.items():
            found = self._present(aligned, column)
            categories[column] = known + [c for c in found if c not in set(known)]
        return CategoricalField(self.batch_key, list(self.covariate_keys), categories,
                                {c: len(v) for c, v in self.categories.items()})

    @property
    def n_categories(self) -> list[int]:
        return [len(self.categories[c]) for c in self.columns]

    @property
    def n_reference_rows(self) -> list[int]:
        return [self.n_reference[c] for c in self.columns]

    @property
    def is_query(self) -> bool:
        return self.n_categories != self.n_reference_rows

    def module_inputs(self) -> dict[str, Any]:
        return {"n_categories": self.n_categories}


@dataclass
class ContinuousField(Field):
    """Continuous covariates ``(n_cells, n_keys)`` from ``adata.obs``: finite numbers."""

    name: ClassVar[str] = "continuous"
    keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = _key_list(self.keys, "continuous_covariate_keys")

    def _column(self, adata: AnnData, key: str) -> np.ndarray:
        values = require_obs_column(adata, key, "continuous covariate")
        try:
            array = values.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"continuous covariate {key!r} is not numeric (dtype {values.dtype}). "
                "Register it with categorical_covariate_keys instead, or convert it to "
                "numbers."
            ) from err
        bad = ~np.isfinite(array)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(
                f"continuous covariate {key!r} has {int(bad.sum())} NaN or infinite values, "
                f"first in cell {adata.obs_names[first]!r} ({array[first]}). Impute or drop "
                "those cells before setup_anndata."
            )
        return array

    def register(self, adata: AnnData, fields: dict[str, Field]) -> None:
        self.extract(adata, fields)

    def extract(self, adata: AnnData, fields: dict[str, Field]) -> np.ndarray:
        if not self.keys:
            return np.zeros((adata.n_obs, 0), dtype=np.float32)
        return np.stack([self._column(adata, k) for k in self.keys], axis=1).astype(np.float32)

    def module_inputs(self) -> dict[str, Any]:
        return {"n_continuous": len(self.keys)}


@dataclass
class LabelsField(Field):
    """Cell labels (e.g. cell types) from ``adata.obs[key]``: codes ``(n_cells,)`` in the
    order of ``categories``."""

    name: ClassVar[str] = "labels"
    key: str = ""
    categories: list[str] = field(default_factory=list)

    def register(self, adata: AnnData, fields: dict[str, Field]) -> None:
        self.categories = present_categories(adata, self.key, "labels_key")

    def extract(self, adata: AnnData, fields: dict[str, Field]) -> np.ndarray:
        values = categorical_values(adata, self.key, "labels_key")
        index = pd.Index(self.categories).get_indexer(values)
        if (index < 0).any():
            raise ValueError(
                f"labels_key {self.key!r} has labels the model has not seen: "
                f"{sorted(set(values[index < 0]))[:5]} (known: {self.categories[:10]})."
            )
        return index.astype(np.int64)

    def module_inputs(self) -> dict[str, Any]:
        return {"n_labels": len(self.categories)}


@dataclass
class IndexField(Field):
    """Each cell's row number ``(n_cells,)`` int64, for modules with per-cell parameters
    (a spot's proportions in Stereoscope) that a minibatch must look up."""

    name: ClassVar[str] = "index"
    n_obs: int = 0

    def register(self, adata: AnnData, fields: dict[str, Field]) -> None:
        self.n_obs = adata.n_obs

    def extract(self, adata: AnnData, fields: dict[str, Field]) -> np.ndarray:
        if adata.n_obs != self.n_obs:
            raise ValueError(
                f"this AnnData has {adata.n_obs} cells, the model has parameters for "
                f"{self.n_obs}: a model with per-cell parameters reads its own cells only."
            )
        return np.arange(adata.n_obs, dtype=np.int64)

    def module_inputs(self) -> dict[str, Any]:
        return {"n_obs": self.n_obs}


@dataclass
class SizeFactorField(Field):
    """Each cell's size factor ``(n_cells,)``: ``adata.obs[key]`` (positive, finite), else
    its total count over the registered data's mean total (recorded as ``mean_total``, so
    other data are scaled alike)."""

    name: ClassVar[str] = "size_factor"
    key: str | None = None
    mean_total: float = 0.0

    def _totals(self, adata: AnnData, fields: dict[str, Field]) -> np.ndarray:
        counts = fields["x"].matrix(adata)  # type: ignore[attr-defined]
        return np.asarray(counts.sum(1), dtype=np.float64).ravel()

    def register(self, adata: AnnData, fields: dict[str, Field]) -> None:
        if self.key is None:
            self.mean_total = float(self._totals(adata, fields).mean())
        self.extract(adata, fields)

    def extract(self, adata: AnnData, fields: dict[str, Field]) -> np.ndarray:
        if self.key is None:
            values = self._totals(adata, fields) / max(self.mean_total, 1e-12)
            where = "total count"
        else:
            values = require_obs_column(adata, self.key, "size_factor_key").to_numpy(
                dtype=np.float64)
            where = f"size factor obs[{self.key!r}]"
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(
                f"{int(bad.sum())} cells have a {where} that is not a positive number, first "
                f"{adata.obs_names[first]!r} ({values[first]}): drop empty cells or fix the "
                "size factors before setup_anndata.")
        return values.astype(np.float32)


@dataclass
class ProteinField(Field):
    """Protein counts ``(n_cells, n_proteins)`` in ``adata.obsm[obsm_key]`` (a DataFrame
    names the proteins; dense or sparse), and which proteins each batch measured:
    ``observed`` ``(n_batch, n_proteins)``, False where every cell of the batch has a zero
    count (the antibody was not in that batch's panel)."""

    name: ClassVar[str] = "protein"
    obsm_key: str = "protein_expression"
    names: list[str] = field(default_factory=list)
    observed: list[list[bool]] = field(default_factory=list)

    def values(self, adata: AnnData) -> tuple[list[str], np.ndarray]:
        """Protein names and counts as float32, validated as raw counts."""
        proteins = _lookup(adata.obsm, self.obsm_key, "protein_expression_obsm_key",
                           "adata.obsm", "Store the protein counts there (cells × proteins).")
        if isinstance(proteins, pd.DataFrame):
            names, values = [str(c) for c in proteins.columns], proteins.to_numpy(np.float32)
        else:
            dense = proteins.toarray() if sp.issparse(proteins) else proteins
            values = np.asarray(dense, dtype=np.float32)
            names = [f"protein_{i}" for i in range(values.shape[1])]
        bad = first_bad_cell(values)
        if bad is not None:
            row, col = bad
            raise ValueError(
                f"adata.obsm[{self.obsm_key!r}] must hold raw protein counts, but cell "
                f"{adata.obs_names[row]!r}, protein {names[col]!r} has {values[row, col]!r}."
            )
        return names, values

    def _observed(self, values: np.ndarray, batch: np.ndarray, n_batch: int) -> np.ndarray:
        observed = np.zeros((n_batch, values.shape[1]), dtype=bool)
        np.logical_or.at(observed, batch, values > 0)
        return observed

    def register(self, adata: AnnData, fields: dict[str, Field]) -> None:
        self.names, values = self.values(adata)
        if not self.names:
            raise ValueError(
                f"adata.obsm[{self.obsm_key!r}] has no protein columns: this model needs "
                "protein counts (use SCVI for RNA alone)."
            )
        categorical = fields["categorical"]
        assert isinstance(categorical, CategoricalField)
        batch = categorical.extract(adata, fields)[:, 0]
        n_batch = categorical.n_categories[0]
        self.observed = self._observed(values, batch, n_batch).tolist()

    @property
    def observed_mask(self) -> np.ndarray:
        return np.asarray(self.observed, dtype=bool).reshape(-1, len(self.names))

    def extract(self, adata: AnnData, fields: dict[str, Field]) -> np.ndarray:
        """The counts; a DataFrame's columns must be the model's panel in order, an
        array's count must match it."""
        names, values = self.values(adata)
        named = isinstance(adata.obsm[self.obsm_key], pd.DataFrame)
        if names == self.names or (not named and len(names) == len(self.names)):
            return values
        detail = (f"{len(set(self.names) - set(names))} of its proteins are missing, "
                  f"{len(set(names) - set(self.names))} unexpected" if named
                  else f"{len(names)} columns")
        raise ValueError(
            f"the proteins in adata.obsm[{self.obsm_key!r}] differ from the model's panel "
            f"({len(self.names)} proteins): {detail}. A query mapped with load_query_data "
            "was aligned to the reference's panel: pass model.adata, or align the data the "
            "same way with model.registry.align_query(adata)."
        )

    def align(self, query: AnnData, aligned: AnnData) -> None:
        if self.obsm_key not in query.obsm:
            raise ValueError(
                f"the reference model reads proteins from obsm[{self.obsm_key!r}], which the "
                f"query lacks (obsm keys: {sorted(query.obsm)}). Store the query's protein "
                "counts there; for a query without proteins, store an empty DataFrame "
                "(n_cells × 0 columns)."
            )
        names, values = self.values(query)
        require_unique(names, "query's protein names",
                       f"rename the columns of adata.obsm[{self.obsm_key!r}]")
        shared = [p for p in self.names if p in set(names)]
        if names and not shared:
            raise ValueError(
                f"none of the query's {len(names)} proteins (e.g. {names[:3]}) is in the "
                f"reference's panel of {len(self.names)} (e.g. {self.names[:3]}): name the "
                "proteins as the reference does."
            )
        for n, message in (
            (len(self.names) - len(shared),
             f"of the reference's {len(self.names)} proteins are not in the query's panel; "
             "they are masked out of the likelihood for the query's batches."),
            (len(names) - len(shared),
             f"of the query's {len(names)} proteins are not in the reference's panel and are "
             "dropped: the reference model has no weights for them."),
        ):
            if n:
                warnings.warn(f"{n} {message}", UserWarning, stacklevel=5)
        counts = aligned_columns(values, names, self.names).toarray()
        aligned.obsm[self.obsm_key] = pd.DataFrame(counts, index=query.obs_names,
                                                   columns=self.names)

    def extend(self, aligned: AnnData, fields: dict[str, Field]) -> ProteinField:
        """One observation row per new batch. Query cells of a reference batch are read
        with that batch's row, which must not change."""
        categorical = fields["categorical"]
        assert isinstance(categorical, CategoricalField)
        _, values = self.values(aligned)
        batch = categorical.extract(aligned, fields)[:, 0]
        in_query = self._observed(values, batch, categorical.n_categories[0])
        reference_rows = self.observed_mask
        n_reference = len(reference_rows)
        for code in np.unique(batch[batch < n_reference]):
            lacking = reference_rows[code] & ~in_query[code]
            if lacking.any():
                name = categorical.categories[categorical.batch_column][code]
                example = [p for p, m in zip(self.names, lacking, strict=True) if m][:3]
                raise ValueError(
                    f"the query's cells of the reference batch {name!r} have no counts for "
                    f"{int(lacking.sum())} proteins that batch measured (e.g. {example}): "
                    "give the query's cells batch names of their own."
                )
        observed = np.concatenate([reference_rows, in_query[n_reference:]])
        return ProteinField(self.obsm_key, list(self.names), observed.tolist())

    def module_inputs(self) -> dict[str, Any]:
        return {"n_proteins": len(self.names), "protein_observed": self.observed_mask}


# Module arguments that come from the data: n_genes from the counts, the rest from fields.
MODULE_INPUTS = frozenset({"n_genes", "n_categories", "n_continuous", "n_labels", "n_proteins",
                           "protein_observed", "n_obs"})

FIELD_TYPES: dict[str, type[Field]] = {
    cls.__name__: cls
    for cls in (CountsField, CategoricalField, ContinuousField, LabelsField, IndexField,
                ProteinField, SizeFactorField)
}


def field_from_dict(d: dict[str, Any]) -> Field:
    d = dict(d)
    kind = d.pop("field")
    if kind not in FIELD_TYPES:
        raise ValueError(f"unknown field type {kind!r} in a saved registry.")
    return FIELD_TYPES[kind](**d)
