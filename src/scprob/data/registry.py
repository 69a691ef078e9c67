"""The AnnData registry: the fields a model reads, validated once, saved with the model.

``register_fields`` validates each declared field (``scprob.data.fields``) in order and
stores the record in ``adata.uns["_scprob"]``. The record is saved with a trained model, so
a model loaded later, or a query dataset, is read with exactly the reference's gene order,
category codes and protein panel. ``Registry.cell_data`` turns a registered AnnData into
the tensors the loader serves; ``align_query`` and ``extend_for_query`` are scArches' data
side (the module side is ``scprob.nn.surgery``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from anndata import AnnData

from scprob.data.fields import (
    BATCH_COLUMN,
    CategoricalField,
    ContinuousField,
    CountsField,
    Field,
    ProteinField,
    field_from_dict,
)
from scprob.data.loader import CellData

UNS_KEY = "_scprob"


def _plain(value: Any) -> Any:
    """JSON-like Python values from what an h5ad round trip returns (arrays, numpy
    scalars)."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class Registry:
    """The fields a model reads, in declaration order. JSON-serialisable."""

    model_name: str
    fields: dict[str, Field]

    # What every model reads ----------------------------------------------------------------
    @property
    def counts(self) -> CountsField:
        return self._typed("x", CountsField)

    @property
    def categorical(self) -> CategoricalField:
        return self._typed("categorical", CategoricalField)

    def _typed(self, name: str, kind: type[Any]) -> Any:
        found = self.fields.get(name)
        if not isinstance(found, kind):
            raise ValueError(f"the {self.model_name} registry has no {kind.__name__}.")
        return found

    @property
    def gene_names(self) -> list[str]:
        return self.counts.gene_names

    @property
    def layer(self) -> str | None:
        return self.counts.layer

    @property
    def batch_categories(self) -> list[str]:
        return self.categorical.categories[self.categorical.batch_column]

    @property
    def categorical_columns(self) -> list[str]:
        """All categorical inputs in code order: the batch, then the other covariates."""
        return self.categorical.columns

    @property
    def categories(self) -> dict[str, list[str]]:
        return self.categorical.categories

    @property
    def n_categories(self) -> list[int]:
        return self.categorical.n_categories

    @property
    def n_reference_categories(self) -> dict[str, int]:
        return self.categorical.n_reference

    @property
    def n_batch(self) -> int:
        return self.n_categories[0]

    @property
    def continuous_covariate_keys(self) -> list[str]:
        found = self.fields.get("continuous")
        return found.keys if isinstance(found, ContinuousField) else []

    @property
    def protein_names(self) -> list[str]:
        found = self.fields.get("protein")
        return found.names if isinstance(found, ProteinField) else []

    @property
    def is_query(self) -> bool:
        """Whether surgery appended categories to any column (a query model's registry)."""
        return self.categorical.is_query

    # Reading data ------------------------------------------------------------------------
    def cell_data(self, adata: AnnData) -> CellData:
        """The tensors a loader serves, one entry per field (``"x"``: the counts)."""
        counts = self.counts.extract(adata, self.fields)
        values = {name: torch.as_tensor(f.extract(adata, self.fields))
                  for name, f in self.fields.items() if name != "x"}
        return CellData.from_arrays(counts, values)

    def module_inputs(self) -> dict[str, Any]:
        """What the fields tell a module about the data's shape (``n_genes``, …)."""
        inputs: dict[str, Any] = {"n_genes": len(self.gene_names)}
        for f in self.fields.values():
            inputs.update(f.module_inputs())
        return inputs

    # scArches: the data side ------------------------------------------------------------
    def align_query(self, query: AnnData, min_gene_overlap: float = 0.5) -> AnnData:
        """A copy of ``query`` in the reference's layout: its genes (by name; a missing one
        is zeros, an extra one dropped, each with a warning; refused below
        ``min_gene_overlap``), its protein panel, the query's ``obs``. Counts are CSR
        float32 ``(n_cells, n_reference_genes)`` in ``X`` (and in the registered layer)."""
        counts = self.counts.aligned_counts(query, min_gene_overlap)
        aligned = AnnData(counts, obs=query.obs.copy())
        aligned.var_names = self.gene_names
        if self.layer is not None:
            aligned.layers[self.layer] = counts.copy()
        for f in self.fields.values():
            f.align(query, aligned)
        return aligned

    def extend_for_query(self, aligned: AnnData) -> Registry:
        """The query model's registry: each field extended by the query's new categories
        (appended after the reference's) and what follows from them."""
        extended: dict[str, Field] = {}
        for name, f in self.fields.items():
            extended[name] = f.extend(aligned, extended)
        return Registry(self.model_name, extended)

    # Storage ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "field_order": list(self.fields),
                "fields": {name: f.to_dict() for name, f in self.fields.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Registry:
        d = _plain(dict(d))
        if "fields" not in d:
            raise ValueError("this registry was written by an older scprob (no 'fields'): "
                             "set the data up again with Model.setup_anndata.")
        return cls(d["model_name"],
                   {name: field_from_dict(d["fields"][name]) for name in d["field_order"]})


def register_fields(adata: AnnData, model_name: str, fields: Sequence[Field]) -> Registry:
    """Validate ``fields`` on ``adata`` in order and store the registry in ``adata.uns``."""
    registered: dict[str, Field] = {}
    for f in fields:
        f.register(adata, registered)
        registered[f.name] = f
    registry = Registry(model_name, registered)
    adata.uns[UNS_KEY] = registry.to_dict()
    return registry


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


__all__ = ["BATCH_COLUMN", "UNS_KEY", "Registry", "get_registry", "register_fields"]
