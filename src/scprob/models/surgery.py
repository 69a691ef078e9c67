"""scArches architecture surgery: a trained reference model, grown by the query's categories.

scArches (Lotfollahi et al. 2021) maps a query dataset into a trained reference model
without retraining it. The reference network reads the batch (and any other categorical
covariate) as one-hot inputs; the query's new batches become new one-hot columns, i.e. new
input weights, and only those are trained on the query. Every reference weight stays fixed,
so the reference cells' latent representation is the same before and after, bit for bit.

Here a one-hot block is an embedding table of a ``CovariateLinear`` (``scprob.nn.layers``),
so a new category is a new row of the table of *its own* covariate, in any layer (the
encoder's too when it reads the covariates), whichever covariate it belongs to. The steps:

1. **Align the query** to the reference's genes by name (missing genes are zero counts,
   extra genes dropped) and to its protein panel (missing proteins are zero counts, which
   the observation mask then marks as unmeasured in the query's batches).
2. **Extend the registry**: the query's new categories are appended after the reference's,
   so shared categories keep their codes; ``n_reference_categories`` records where the
   reference's rows end.
3. **Grow the module**: load the reference weights, append one row per new category to the
   table of that covariate in every layer that reads it (``CovariateLinear.add_categories``).
4. **Freeze**: every reference weight gets ``requires_grad=False``, so the training plan
   never hands it to the optimizer (no Adam moment, no weight decay touches it; freezing by
   zeroing gradients would still let weight decay move them). Batch-norm layers are locked
   in evaluation mode (their running statistics are reference weights too), and with
   ``freeze_dropout`` the query model is built without dropout.

A saved query model is rebuilt by the same steps 3–4 from its registry
(``restore_query_module``, called by ``BaseModel.prepare_state``).

Convention: table ``k`` of a ``CovariateLinear`` belongs to the ``k``-th categorical column
of the registry (the batch first). A layer may read only a prefix of the columns (totalVI's
per-batch protein background prior reads the batch alone).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch import Tensor, nn

from scprob.data.registry import (
    DEFAULT_BATCH,
    UNS_KEY,
    Registry,
    category_codes,
    present_categories,
    protein_counts,
    protein_observation_mask,
    validate_counts,
    validate_proteins,
)
from scprob.nn.layers import CovariateLinear

if TYPE_CHECKING:
    from scprob.models.base import BaseModel

    ModelT = TypeVar("ModelT", bound=BaseModel)


# ----------------------------------------------------------------------- 1. alignment


def _aligned_columns(
    matrix: np.ndarray | sp.spmatrix, source: list[str], target: list[str]
) -> sp.csr_matrix:
    """``matrix`` ``(n_cells, len(source))`` with its columns reordered to ``target``; a
    target column absent from ``source`` is all zeros. Multiplying by a 0/1 selection
    matrix moves each count once, so integer counts stay exact."""
    position = pd.Index(source).get_indexer(target)
    found = np.flatnonzero(position >= 0)
    selection = sp.csr_matrix(
        (np.ones(len(found), dtype=np.float32), (position[found], found)),
        shape=(len(source), len(target)),
    )
    counts = sp.csr_matrix(matrix, dtype=np.float32)
    return sp.csr_matrix(counts @ selection)


def _require_unique(names: list[str], what: str) -> None:
    duplicated = pd.Index(names).duplicated()
    if duplicated.any():
        repeated = sorted({names[i] for i in np.flatnonzero(duplicated)})
        raise ValueError(
            f"the query's {what} names are not unique ({repeated[:3]} occur more than "
            f"once): make them unique (e.g. adata.var_names_make_unique()) before "
            "load_query_data."
        )


def align_query_anndata(
    query_adata: AnnData, registry: Registry, min_gene_overlap: float = 0.5
) -> AnnData:
    """A copy of ``query_adata`` with the reference's genes and protein panel, in order.

    Genes are matched by name: a reference gene missing from the query becomes a column of
    zero counts (a ``UserWarning`` says how many), query genes the reference lacks are
    dropped. If fewer than ``min_gene_overlap`` of the reference's genes are present the
    query is refused: so little overlap usually means another gene identifier (symbols vs
    Ensembl IDs). Proteins are matched the same way; a reference protein missing from the
    query's panel becomes zero counts, i.e. unmeasured in the query's batches (see
    ``protein_observation_mask``). Returns counts ``(n_cells, n_reference_genes)`` as CSR
    float32 in ``X`` (and in ``layers[registry.layer]``), the query's ``obs``, and the
    aligned proteins ``(n_cells, n_reference_proteins)`` as a DataFrame in ``obsm``.
    """
    if not 0.0 < min_gene_overlap <= 1.0:
        raise ValueError(f"min_gene_overlap must be in (0, 1], got {min_gene_overlap}.")
    validate_counts(query_adata, registry.layer)
    query_genes = [str(g) for g in query_adata.var_names]
    _require_unique(query_genes, "gene")
    reference_genes = registry.gene_names
    n_shared = len(set(query_genes) & set(reference_genes))
    if n_shared < min_gene_overlap * len(reference_genes):
        raise ValueError(
            f"the query shares {n_shared} of the reference's {len(reference_genes)} genes "
            f"({n_shared / len(reference_genes):.0%}), fewer than min_gene_overlap="
            f"{min_gene_overlap:.0%}: check that both use the same gene identifiers "
            "(symbols vs Ensembl IDs), or lower min_gene_overlap."
        )
    n_missing = len(reference_genes) - n_shared
    if n_missing:
        warnings.warn(
            f"{n_missing} of the reference's {len(reference_genes)} genes are missing from "
            "the query; they are filled with zero counts.",
            UserWarning,
            stacklevel=4,  # the caller of Model.load_query_data
        )
    source = query_adata.X if registry.layer is None else query_adata.layers[registry.layer]
    counts = _aligned_columns(source, query_genes, reference_genes)

    aligned = AnnData(counts, obs=query_adata.obs.copy())
    aligned.var_names = reference_genes
    if registry.layer is not None:
        aligned.layers[registry.layer] = counts.copy()
    if registry.protein_expression_obsm_key is not None:
        key = registry.protein_expression_obsm_key
        aligned.obsm[key] = _aligned_proteins(query_adata, key, registry.protein_names)
    return aligned


def _aligned_proteins(query_adata: AnnData, key: str, panel: list[str]) -> pd.DataFrame:
    if key not in query_adata.obsm:
        raise ValueError(
            f"the reference model reads proteins from obsm[{key!r}], which the query lacks "
            f"(obsm keys: {sorted(query_adata.obsm)}). Store the query's protein counts "
            "there; for a query without proteins, store an empty DataFrame "
            "(n_cells × 0 columns)."
        )
    names = validate_proteins(query_adata, key)
    _require_unique(names, "protein")
    shared = [p for p in panel if p in set(names)]
    if names and not shared:
        raise ValueError(
            f"none of the query's {len(names)} proteins (e.g. {names[:3]}) is in the "
            f"reference's panel of {len(panel)} (e.g. {panel[:3]}): name the proteins as "
            "the reference does."
        )
    n_missing, n_extra = len(panel) - len(shared), len(names) - len(shared)
    if n_missing:
        warnings.warn(
            f"{n_missing} of the reference's {len(panel)} proteins are not in the query's "
            "panel; they are masked out of the likelihood for the query's batches.",
            UserWarning,
            stacklevel=5,
        )
    if n_extra:
        warnings.warn(
            f"{n_extra} of the query's {len(names)} proteins are not in the reference's "
            "panel and are dropped: the reference model has no weights for them.",
            UserWarning,
            stacklevel=5,
        )
    values = _aligned_columns(protein_counts(query_adata, key), names, panel).toarray()
    return pd.DataFrame(values, index=query_adata.obs_names, columns=panel)


# -------------------------------------------------------------------- 2. the registry


def extend_registry(reference: Registry, aligned: AnnData) -> Registry:
    """The reference's registry with the categories of ``aligned`` that it lacks appended
    after its own, for every categorical column; ``n_reference_categories`` records how
    many rows of each table the reference owns. With proteins, the observation mask gains
    one row per new batch."""
    categories: dict[str, list[str]] = {}
    for column in reference.categorical_columns:
        known = reference.categories[column]
        if column == "_batch":  # no batch_key: every cell is in the one default batch
            found = [DEFAULT_BATCH]
        else:
            role = "batch_key" if column == reference.batch_key else "categorical covariate"
            found = present_categories(aligned, column, role)
        categories[column] = known + [c for c in found if c not in set(known)]
    query = Registry.from_dict(
        {
            **reference.to_dict(),
            "categories": categories,
            "n_reference_categories": {c: len(v) for c, v in reference.categories.items()},
        }
    )
    if reference.protein_expression_obsm_key is not None:
        query.protein_observed = _extended_protein_mask(reference, query, aligned)
    return query


def _extended_protein_mask(
    reference: Registry, query: Registry, aligned: AnnData
) -> list[list[bool]]:
    proteins = protein_counts(aligned, reference.protein_expression_obsm_key)
    batch = category_codes(aligned, query)[:, 0]
    observed_in_query = protein_observation_mask(proteins, batch, query.n_batch)
    reference_rows = np.asarray(reference.protein_observed, dtype=bool).reshape(
        reference.n_batch, len(reference.protein_names)
    )
    # Query cells of a reference batch are read with that batch's mask, which the
    # reference cells share and which must not change. If the query's panel lacks a
    # protein the batch measured, those cells would be trained on zeros as if observed.
    for code in np.unique(batch[batch < reference.n_batch]):
        lacking = reference_rows[code] & ~observed_in_query[code]
        if lacking.any():
            name = reference.categories[reference.batch_column][code]
            raise ValueError(
                f"the query's cells of the reference batch {name!r} have no counts for "
                f"{int(lacking.sum())} proteins that batch measured (e.g. "
                f"{[p for p, m in zip(reference.protein_names, lacking, strict=True) if m][:3]})"
                ": give the query's cells batch names of their own."
            )
    new_rows = observed_in_query[reference.n_batch :]
    return np.concatenate([reference_rows, new_rows]).tolist()


def is_query_registry(registry: Registry) -> bool:
    """Whether surgery appended categories to any column (the model is a query model)."""
    return any(
        len(values) > registry.n_reference_categories.get(column, len(values))
        for column, values in registry.categories.items()
    )


# ----------------------------------------------------------------------- 3. the module


def covariate_layers(module: nn.Module) -> list[tuple[str, CovariateLinear]]:
    """Every ``CovariateLinear`` in ``module`` with its qualified name."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, CovariateLinear)]


def _table_columns(name: str, layer: CovariateLinear, registry: Registry) -> list[str]:
    """The registry columns of the layer's tables: a prefix of ``categorical_columns``."""
    columns = registry.categorical_columns
    if len(layer.category_tables) > len(columns):
        raise ValueError(
            f"layer {name!r} has {len(layer.category_tables)} category tables but the "
            f"registry has only {len(columns)} categorical columns: the module and the "
            "registry belong to different models."
        )
    return columns[: len(layer.category_tables)]


def shape_covariate_tables(
    module: nn.Module, registry: Registry, n_reference: Mapping[str, int]
) -> None:
    """Give each table the shape the registry implies: ``n_reference[column]`` rows in
    ``category_tables[k]`` and the rest of the column's categories in
    ``new_category_tables[k]``. Values are left uninitialised (a state dict fills them)."""
    for name, layer in covariate_layers(module):
        for k, column in enumerate(_table_columns(name, layer, registry)):
            n_total, n_old = len(registry.categories[column]), n_reference[column]
            for tables, n_rows in ((layer.category_tables, n_old),
                                   (layer.new_category_tables, n_total - n_old)):
                if tables[k].shape[0] != n_rows:
                    tables[k] = nn.Parameter(tables[k].new_empty(n_rows, layer.n_out))


def consolidated_state(module: nn.Module) -> dict[str, Tensor]:
    """A copy of ``module``'s state with each table's query rows merged into its reference
    rows: a query model becomes the reference of the next surgery."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    for name, layer in covariate_layers(module):
        prefix = f"{name}." if name else ""
        for k in range(len(layer.category_tables)):
            old, new = f"{prefix}category_tables.{k}", f"{prefix}new_category_tables.{k}"
            state[old] = torch.cat([state[old], state[new]])
            state[new] = state[new][:0]
    return state


def _check_no_other_category_axis(module: nn.Module, reference_state: Mapping[str, Tensor]) -> None:
    """Surgery can only grow CovariateLinear tables. A parameter that changes shape with the
    number of categories anywhere else (a per-batch dispersion stored as one matrix) would
    have to be trained as a whole, reference part included."""
    for key, value in module.state_dict().items():
        if "category_tables." in key or key not in reference_state:
            continue
        if value.shape != reference_state[key].shape:
            raise ValueError(
                f"parameter {key!r} depends on the number of categories "
                f"({tuple(reference_state[key].shape)} in the reference, "
                f"{tuple(value.shape)} with the query's categories) but is not a "
                "CovariateLinear table, so surgery cannot train its query part alone. "
                "Use a reference model without it (for SCVI: dispersion='gene')."
            )


def grow_covariate_tables(module: nn.Module, registry: Registry) -> dict[str, int]:
    """Append one trainable row per query category to the table of its covariate in every
    layer (``add_categories``). Returns the number of new rows per column."""
    n_new = {
        column: len(values) - registry.n_reference_categories[column]
        for column, values in registry.categories.items()
    }
    for name, layer in covariate_layers(module):
        columns = _table_columns(name, layer, registry)
        layer.add_categories([n_new[column] for column in columns])
    return n_new


# ----------------------------------------------------------------------- 4. freezing


class FrozenBatchNorm1d(nn.BatchNorm1d):
    """Batch norm that stays in evaluation mode: it normalises with the reference's running
    statistics and never updates them, whatever ``train()`` the trainer calls."""

    @classmethod
    def from_batch_norm(cls, norm: nn.BatchNorm1d) -> FrozenBatchNorm1d:
        frozen = cls(norm.num_features, eps=norm.eps, momentum=norm.momentum,
                     affine=norm.affine, track_running_stats=norm.track_running_stats)
        frozen.load_state_dict(norm.state_dict())
        frozen.to(next(iter(norm.state_dict().values())).device)
        frozen.requires_grad_(False)
        return frozen.train(False)

    def train(self, mode: bool = True) -> FrozenBatchNorm1d:
        return super().train(False)


def freeze_reference(module: nn.Module) -> None:
    """Only the appended category rows stay trainable; batch norms are locked in eval mode."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    for _, layer in covariate_layers(module):
        for table in layer.new_category_tables:
            table.requires_grad_(table.shape[0] > 0)
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm1d) and not isinstance(child, FrozenBatchNorm1d):
                setattr(parent, child_name, FrozenBatchNorm1d.from_batch_norm(child))


def n_trainable_parameters(module: nn.Module) -> int:
    """Number of scalars the optimizer will update."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def restore_query_module(module: nn.Module, registry: Registry) -> None:
    """Shape and freeze a freshly built module as the query model ``registry`` describes, so
    that a saved query model's state dict loads into it (``BaseModel.prepare_state``). A
    reference registry leaves the module as it is."""
    if not is_query_registry(registry):
        return
    shape_covariate_tables(module, registry, registry.n_reference_categories)
    freeze_reference(module)


# --------------------------------------------------------------------------- the whole


def build_query_model(
    model_class: type[ModelT],
    query_adata: AnnData,
    reference_model: ModelT,
    freeze_dropout: bool = True,
    min_gene_overlap: float = 0.5,
) -> ModelT:
    """A ``model_class`` query model: the reference's weights, frozen, plus one trainable
    row per query category in every table of its covariate. Train it with ``.train()``.

    The query model reads ``model.adata``, the query aligned to the reference
    (``align_query_anndata``); pass that, or data aligned the same way, to its queries.
    """
    if not isinstance(reference_model, model_class):
        raise ValueError(
            f"the reference model is a {type(reference_model).__name__}, not a "
            f"{model_class.__name__}: call {type(reference_model).__name__}.load_query_data."
        )
    reference = reference_model.registry
    aligned = align_query_anndata(query_adata, reference, min_gene_overlap)
    registry = extend_registry(reference, aligned)
    if not is_query_registry(registry):
        raise ValueError(
            "the query adds no new category to any categorical covariate "
            f"({reference.categorical_columns}): the reference model reads it as it is, and "
            "surgery would have nothing to train. Map the query with the reference model "
            "(on align_query_anndata(query, reference_model.registry)), or give the "
            "query's batches names of their own."
        )
    aligned.uns[UNS_KEY] = registry.to_dict()

    init_params: dict[str, Any] = dict(reference_model.init_params)
    if freeze_dropout and "dropout_rate" in init_params:
        # Recorded in init_params, so a saved query model is rebuilt without dropout too.
        init_params["dropout_rate"] = 0.0
    # Training-time settings that only the reference needs (recorded the same way).
    init_params.update({k: v for k, v in model_class.query_init_params.items()
                        if k in init_params})
    query_model = model_class(aligned, seed=reference_model.seed, **init_params)

    module = query_model.module
    reference_state = consolidated_state(reference_model.module)
    # Shaped as the (consolidated) reference first: no query rows until add_categories.
    shape_covariate_tables(module, reference, {c: len(v) for c, v in reference.categories.items()})
    _check_no_other_category_axis(module, reference_state)
    module.load_state_dict(reference_state)
    grow_covariate_tables(module, registry)
    freeze_reference(module)
    module.eval()
    return query_model
