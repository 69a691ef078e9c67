"""The AnnData registry: which fields of an AnnData a model reads, validated once.

``register_anndata`` checks the counts and covariates a user names, records what the model
needs to read the same fields again (the layer, gene names, the ordered categories of each
categorical covariate, the continuous covariate names, a protein panel), and stores that
record in ``adata.uns["_scprob"]``. The record is saved with a trained model, so a model
loaded later, or a query dataset, is read with exactly the reference's gene order and
category codes.

``extract_cell_data`` turns a registered AnnData into the tensors the loader serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from scprob.data.loader import CellData

UNS_KEY = "_scprob"
# Cells without a batch column all belong to one batch of this name.
DEFAULT_BATCH = "batch_0"


@dataclass
class Registry:
    """What a model reads from an AnnData. JSON-serialisable (``to_dict``/``from_dict``)."""

    model_name: str
    layer: str | None
    gene_names: list[str]
    batch_key: str | None
    # Ordered categories of every categorical covariate, the batch first (key "_batch"
    # when no batch_key was given). The order defines the codes and the one-hot columns.
    categories: dict[str, list[str]]
    categorical_covariate_keys: list[str] = field(default_factory=list)
    continuous_covariate_keys: list[str] = field(default_factory=list)
    protein_expression_obsm_key: str | None = None
    protein_names: list[str] = field(default_factory=list)
    labels_key: str | None = None
    # Number of categories each categorical covariate had in the reference, before any
    # query categories were appended by surgery.
    n_reference_categories: dict[str, int] = field(default_factory=dict)
    # (n_batch, n_proteins): False where a protein was not measured in a batch, i.e. its
    # counts are zero in every cell of that batch (a panel without that antibody). totalVI
    # leaves those entries out of its likelihood. Empty without proteins.
    protein_observed: list[list[bool]] = field(default_factory=list)

    @property
    def batch_column(self) -> str:
        return self.batch_key if self.batch_key is not None else "_batch"

    @property
    def categorical_columns(self) -> list[str]:
        """All categorical inputs in code order: the batch, then the other covariates."""
        return [self.batch_column, *self.categorical_covariate_keys]

    @property
    def n_categories(self) -> list[int]:
        return [len(self.categories[c]) for c in self.categorical_columns]

    @property
    def n_batch(self) -> int:
        return len(self.categories[self.batch_column])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Registry:
        d = dict(d)
        d["categories"] = {k: [str(c) for c in v] for k, v in d["categories"].items()}
        for key in ("gene_names", "categorical_covariate_keys", "continuous_covariate_keys",
                    "protein_names"):
            d[key] = [str(x) for x in d.get(key) or []]
        d["n_reference_categories"] = {
            k: int(v) for k, v in (d.get("n_reference_categories") or {}).items()
        }
        # May come back from an h5ad as a 2-d array: test for None, not for truth.
        rows = d.get("protein_observed")
        d["protein_observed"] = [] if rows is None else [[bool(v) for v in r] for r in rows]
        return cls(**d)


# --------------------------------------------------------------------------- validation


def _counts_matrix(adata: AnnData, layer: str | None) -> np.ndarray | sp.csr_matrix:
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise ValueError(
            f"layer {layer!r} is not in adata.layers (available: {sorted(adata.layers)}). "
            "Pass layer=None to use adata.X, or the name of the layer holding raw counts."
        )
    return adata.layers[layer]


def _as_supported_matrix(x: Any) -> np.ndarray | sp.csr_matrix:
    if sp.issparse(x):
        return x.tocsr() if x.format != "csr" else x
    if isinstance(x, np.ndarray):
        return x
    raise ValueError(
        f"counts of type {type(x).__name__} are not supported: pass a numpy array or a "
        "scipy sparse matrix (load backed AnnData into memory with adata.to_memory())."
    )


def validate_counts(adata: AnnData, layer: str | None) -> None:
    """Counts must be a non-empty matrix of finite, non-negative integers."""
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"{where} is empty ({adata.n_obs} cells × {adata.n_vars} genes): a model needs "
            "at least one cell and one gene; check the filtering that produced it."
        )
    x = _as_supported_matrix(_counts_matrix(adata, layer))
    values = x.data if sp.issparse(x) else np.asarray(x).ravel()
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if not bad.any():
        return
    flat = int(np.argmax(bad))
    if sp.issparse(x):
        row = int(np.searchsorted(x.indptr, flat, side="right") - 1)
        col = int(x.indices[flat])
    else:
        row, col = divmod(flat, adata.n_vars)
    value = values[flat]
    kind = "negative" if value < 0 else ("not finite" if not np.isfinite(value) else
                                         "not an integer")
    raise ValueError(
        f"{where} must hold raw counts (non-negative integers), but the value {value!r} of "
        f"cell {adata.obs_names[row]!r}, gene {adata.var_names[col]!r} is {kind}. Pass the "
        "layer with raw counts (layer=...), not normalised or log-transformed values."
    )


def _require_obs_key(adata: AnnData, key: str, role: str) -> pd.Series:
    if key not in adata.obs.columns:
        available = ", ".join(map(repr, list(adata.obs.columns)[:10]))
        raise ValueError(
            f"{role} {key!r} is not a column of adata.obs (available: {available or 'none'}). "
            "Add the column to adata.obs or pass the name of an existing one."
        )
    return adata.obs[key]


def _categorical_values(adata: AnnData, key: str, role: str) -> pd.Series:
    values = _require_obs_key(adata, key, role)
    missing = values.isna().to_numpy()
    if missing.any():
        first = adata.obs_names[int(np.argmax(missing))]
        raise ValueError(
            f"{role} {key!r} is missing (NaN) for {int(missing.sum())} cells, first "
            f"{first!r}. Fill the missing values (e.g. with an 'unknown' category) or "
            "drop those cells."
        )
    return values.astype(str)


def _ordered_categories(values: pd.Series, original: pd.Series) -> list[str]:
    if isinstance(original.dtype, pd.CategoricalDtype):
        present = set(values)
        return [str(c) for c in original.cat.categories if str(c) in present]
    return sorted(set(values))


def _continuous_values(adata: AnnData, key: str) -> np.ndarray:
    values = _require_obs_key(adata, key, "continuous covariate")
    try:
        array = values.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"continuous covariate {key!r} is not numeric (dtype {values.dtype}). Register "
            "it with categorical_covariate_keys instead, or convert it to numbers."
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


def _unique_keys(keys: Sequence[str] | None, role: str) -> list[str]:
    keys = [] if keys is None else ([keys] if isinstance(keys, str) else list(keys))
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"{role} lists {duplicates} more than once: name each key once.")
    return keys


# ------------------------------------------------------------------------- registration


def register_anndata(
    adata: AnnData,
    model_name: str,
    layer: str | None = None,
    batch_key: str | None = None,
    categorical_covariate_keys: Sequence[str] | None = None,
    continuous_covariate_keys: Sequence[str] | None = None,
    protein_expression_obsm_key: str | None = None,
    labels_key: str | None = None,
) -> Registry:
    """Validate the fields a model will read and store the registry in ``adata.uns``."""
    validate_counts(adata, layer)
    categorical_covariate_keys = _unique_keys(
        categorical_covariate_keys, "categorical_covariate_keys"
    )
    continuous_covariate_keys = _unique_keys(continuous_covariate_keys, "continuous_covariate_keys")
    if batch_key is not None and batch_key in categorical_covariate_keys:
        raise ValueError(
            f"{batch_key!r} is both batch_key and a categorical covariate: name it once."
        )
    categories: dict[str, list[str]] = {}
    if batch_key is None:
        categories["_batch"] = [DEFAULT_BATCH]
    else:
        values = _categorical_values(adata, batch_key, "batch_key")
        categories[batch_key] = _ordered_categories(values, adata.obs[batch_key])
    for key in categorical_covariate_keys:
        values = _categorical_values(adata, key, "categorical covariate")
        categories[key] = _ordered_categories(values, adata.obs[key])
    for key in continuous_covariate_keys:
        _continuous_values(adata, key)
    if labels_key is not None:
        _require_obs_key(adata, labels_key, "labels_key")

    protein_names: list[str] = []
    if protein_expression_obsm_key is not None:
        protein_names = validate_proteins(adata, protein_expression_obsm_key)

    registry = Registry(
        model_name=model_name,
        layer=layer,
        gene_names=[str(g) for g in adata.var_names],
        batch_key=batch_key,
        categories=categories,
        categorical_covariate_keys=categorical_covariate_keys,
        continuous_covariate_keys=continuous_covariate_keys,
        protein_expression_obsm_key=protein_expression_obsm_key,
        protein_names=protein_names,
        labels_key=labels_key,
        n_reference_categories={k: len(v) for k, v in categories.items()},
    )
    if protein_expression_obsm_key is not None:
        registry.protein_observed = protein_observation_mask(
            protein_counts(adata, protein_expression_obsm_key),
            category_codes(adata, registry)[:, 0],
            registry.n_batch,
        ).tolist()
    adata.uns[UNS_KEY] = registry.to_dict()
    return registry


def present_categories(adata: AnnData, key: str, role: str) -> list[str]:
    """The categories of ``adata.obs[key]`` that occur in its cells, in the column's
    categorical order (sorted for a non-categorical column)."""
    return _ordered_categories(_categorical_values(adata, key, role), adata.obs[key])


def protein_counts(adata: AnnData, obsm_key: str) -> np.ndarray:
    """The protein counts ``adata.obsm[obsm_key]`` as a float32 array ``(n_cells, n_proteins)``."""
    proteins = adata.obsm[obsm_key]
    if isinstance(proteins, pd.DataFrame):
        return proteins.to_numpy(dtype=np.float32)
    if sp.issparse(proteins):
        return np.asarray(proteins.toarray(), dtype=np.float32)
    return np.asarray(proteins, dtype=np.float32)


def protein_observation_mask(
    proteins: np.ndarray, batch_codes: np.ndarray, n_batch: int
) -> np.ndarray:
    """``(n_batch, n_proteins)`` bool: True where some cell of the batch has a non-zero
    count of the protein. An antibody that was in a batch's panel is detected in at least
    one of its cells; one whose counts are all zero was not measured there. A batch without
    cells in ``proteins`` ``(n_cells, n_proteins)`` is all False."""
    observed = np.zeros((n_batch, proteins.shape[1]), dtype=bool)
    np.logical_or.at(observed, np.asarray(batch_codes), np.asarray(proteins) > 0)
    return observed


def validate_proteins(adata: AnnData, obsm_key: str) -> list[str]:
    """Protein counts in ``adata.obsm[obsm_key]``: finite non-negative integers."""
    if obsm_key not in adata.obsm:
        raise ValueError(
            f"protein_expression_obsm_key {obsm_key!r} is not in adata.obsm (available: "
            f"{sorted(adata.obsm)}). Store the protein counts there (cells × proteins)."
        )
    proteins = adata.obsm[obsm_key]
    if isinstance(proteins, pd.DataFrame):
        names = [str(c) for c in proteins.columns]
        values = proteins.to_numpy(dtype=np.float64)
    else:
        values = np.asarray(proteins.toarray() if sp.issparse(proteins) else proteins, float)
        names = [f"protein_{i}" for i in range(values.shape[1])]
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"adata.obsm[{obsm_key!r}] must hold raw protein counts, but cell "
            f"{adata.obs_names[row]!r}, protein {names[col]!r} has {values[row, col]!r}."
        )
    return names


def get_registry(adata: AnnData, model_name: str | None = None) -> Registry:
    if UNS_KEY not in adata.uns:
        name = model_name or "the model"
        raise ValueError(
            f"this AnnData is not set up for {name}: call "
            f"{model_name or 'Model'}.setup_anndata(adata, ...) first."
        )
    registry = Registry.from_dict(adata.uns[UNS_KEY])
    if model_name is not None and registry.model_name != model_name:
        raise ValueError(
            f"this AnnData was set up for {registry.model_name}, not {model_name}: call "
            f"{model_name}.setup_anndata(adata, ...)."
        )
    return registry


# --------------------------------------------------------------------------- extraction


def check_genes_match(adata: AnnData, registry: Registry) -> None:
    genes = [str(g) for g in adata.var_names]
    if genes == registry.gene_names:
        return
    expected, observed = set(registry.gene_names), set(genes)
    missing, extra = sorted(expected - observed), sorted(observed - expected)
    if not missing and not extra:
        detail = "the same genes in a different order"
    else:
        detail = (f"{len(missing)} genes missing (e.g. {missing[:3]}), "
                  f"{len(extra)} unexpected (e.g. {extra[:3]})")
    raise ValueError(
        f"the genes of this AnnData differ from the model's ({len(registry.gene_names)} "
        f"genes): {detail}. Subset and order them as the model's: "
        "adata[:, model.registry.gene_names]; for new data with other genes, use "
        "load_query_data."
    )


def check_proteins_match(adata: AnnData, registry: Registry) -> None:
    """The protein panel of ``adata`` must be the registry's, in its order (a DataFrame
    is checked by name, an array by its number of columns)."""
    key = registry.protein_expression_obsm_key
    if not registry.protein_names or key is None:
        return
    if key not in adata.obsm:
        raise ValueError(f"this AnnData has no adata.obsm[{key!r}]: the model reads its "
                         f"{len(registry.protein_names)} proteins from there.")
    proteins = adata.obsm[key]
    n_expected = len(registry.protein_names)
    if isinstance(proteins, pd.DataFrame):
        names = [str(c) for c in proteins.columns]
        if names == registry.protein_names:
            return
        detail = (f"{len(set(registry.protein_names) - set(names))} of its proteins are "
                  f"missing, {len(set(names) - set(registry.protein_names))} unexpected")
    elif proteins.shape[1] == n_expected:
        return
    else:
        detail = f"{proteins.shape[1]} columns"
    raise ValueError(
        f"the proteins in adata.obsm[{key!r}] differ from the model's panel ({n_expected} "
        f"proteins): {detail}. A query mapped with load_query_data was aligned to the "
        "reference's panel: pass model.adata, or align the data the same way with "
        "scprob.models.surgery.align_query_anndata(adata, model.registry)."
    )


def category_codes(adata: AnnData, registry: Registry) -> np.ndarray:
    """Integer codes ``(n_cells, n_categorical)`` in the registry's category order."""
    codes = np.zeros((adata.n_obs, len(registry.categorical_columns)), dtype=np.int64)
    for j, column in enumerate(registry.categorical_columns):
        if column == "_batch":
            continue
        role = "batch_key" if column == registry.batch_key else "categorical covariate"
        values = _categorical_values(adata, column, role)
        known = pd.Index(registry.categories[column])
        index = known.get_indexer(values)
        if (index < 0).any():
            unseen = sorted(set(values[index < 0]))
            raise ValueError(
                f"{role} {column!r} has categories the model has not seen: {unseen[:5]}. "
                "A trained model can only read its own categories; integrate new "
                "batches with Model.load_query_data(adata, reference_model)."
            )
        codes[:, j] = index
    return codes


def extract_cell_data(adata: AnnData, registry: Registry) -> CellData:
    """The tensors a loader serves: counts, categorical codes, continuous covariates."""
    check_genes_match(adata, registry)
    validate_counts(adata, registry.layer)
    counts = _as_supported_matrix(_counts_matrix(adata, registry.layer))
    if registry.continuous_covariate_keys:
        cont = np.stack(
            [_continuous_values(adata, k) for k in registry.continuous_covariate_keys], axis=1
        )
    else:
        cont = np.zeros((adata.n_obs, 0))
    extras: dict[str, torch.Tensor] = {}
    if registry.protein_expression_obsm_key is not None:
        names = validate_proteins(adata, registry.protein_expression_obsm_key)
        proteins = adata.obsm[registry.protein_expression_obsm_key]
        values = proteins.to_numpy() if isinstance(proteins, pd.DataFrame) else proteins
        if names != registry.protein_names:
            raise ValueError(
                f"the protein panel differs from the model's ({len(registry.protein_names)} "
                "proteins); use load_query_data for a query with another panel."
            )
        extras["protein"] = torch.as_tensor(np.asarray(values, dtype=np.float32))
    return CellData.from_arrays(counts, category_codes(adata, registry), cont, extras)
