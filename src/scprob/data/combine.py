"""Reference and query CITE-seq data stacked into one AnnData, for a de novo totalVI fit.

``concat_reference_query`` aligns the genes by name (those both share), takes the union of
the protein panels (a protein a batch did not measure is all zero there, the model's
"unobserved") and stacks the cells: ``X`` ``(n_reference + n_query, n_shared_genes)``,
``obsm["protein_expression"]`` ``(n_reference + n_query, n_union_proteins)``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprob.data.io import PROTEIN_KEY


def concat_reference_query(
    reference: ad.AnnData,
    query: ad.AnnData,
    protein_key: str = PROTEIN_KEY,
    batch_key: str = "batch",
) -> ad.AnnData:
    """Reference and query stacked for a de novo (one-step) totalVI fit.

    Genes: those of the reference that the query also has, in the reference's order.
    Proteins: the union panel, the reference's order first, then query-only proteins; a
    protein a batch did not measure is all-zero in that batch, the model's convention for
    "unobserved", and ``uns["protein_unobserved"]`` maps each such batch to its missing
    proteins (the query's batches, and the reference's masked batches).

    ``X`` (and ``layers["counts"]`` where both inputs have it) is CSR float32
    ``(n_reference + n_query, n_shared_genes)``; ``obsm[protein_key]`` a DataFrame
    ``(n_reference + n_query, n_union_proteins)``. ``obs`` keeps the union of the columns
    (missing values NaN); categorical columns keep the reference's categories first, so a
    registry built on the result codes reference batches as the reference did.
    """
    _check_disjoint(reference, query, batch_key)
    genes = reference.var_names[reference.var_names.isin(query.var_names)]
    if genes.empty:
        raise ValueError("reference and query share no gene names; check that both use the "
                         "same gene identifiers (symbols or Ensembl IDs).")
    panel, proteins = _union_panel(reference, query, protein_key)

    def aligned(layer: str | None) -> sp.csr_matrix:
        return sp.vstack([_gene_columns(adata, genes, layer) for adata in (reference, query)],
                         format="csr")

    combined = ad.AnnData(X=aligned(None), obs=_merged_obs(reference.obs, query.obs),
                          var=pd.DataFrame(index=genes.copy()))
    if "counts" in reference.layers and "counts" in query.layers:
        combined.layers["counts"] = aligned("counts")
    proteins.index = combined.obs_names
    combined.obsm[protein_key] = proteins
    combined.uns["protein_unobserved"] = _unobserved_proteins(
        combined.obs[batch_key].astype(str).to_numpy(), proteins.to_numpy(), panel)
    return combined


def _check_disjoint(reference: ad.AnnData, query: ad.AnnData, batch_key: str) -> None:
    """Unique names within each, no cell and no batch in both, a ``batch_key`` column."""
    for role, adata in (("reference", reference), ("query", query)):
        _check_unique(adata.var_names, "var names", role)
        _check_unique(adata.obs_names, "obs names", role)
        if batch_key not in adata.obs.columns:
            raise ValueError(f"the {role} has no obs column {batch_key!r}; pass batch_key=.")
    shared_cells = reference.obs_names.intersection(query.obs_names)
    if len(shared_cells):
        raise ValueError(f"{len(shared_cells)} obs names occur in both reference and query "
                         f"(e.g. {list(shared_cells[:3])}); prefix them to make them distinct.")
    shared_batches = set(reference.obs[batch_key].astype(str)) & set(
        query.obs[batch_key].astype(str))
    if shared_batches:
        raise ValueError(f"batches {sorted(shared_batches)} occur in both reference and "
                         "query; a query brings new batches, rename them.")


def _check_unique(index: pd.Index, what: str, role: str) -> None:
    if not index.is_unique:
        duplicated = sorted(set(index[index.duplicated()]))[:5]
        raise ValueError(f"the {role}'s {what} are not unique (e.g. {duplicated}); make them "
                         f"unique first (e.g. adata.{what.replace(' ', '_')}_make_unique()).")


def _protein_frame(adata: ad.AnnData, key: str, role: str) -> pd.DataFrame:
    if key not in adata.obsm:
        raise ValueError(f"the {role} has no adata.obsm[{key!r}] (available: "
                         f"{sorted(adata.obsm)}); store its protein counts there.")
    proteins = adata.obsm[key]
    if not isinstance(proteins, pd.DataFrame):
        raise ValueError(f"the {role}'s adata.obsm[{key!r}] is a {type(proteins).__name__}; "
                         "it must be a pandas DataFrame whose columns name the proteins, "
                         "so that the panels can be aligned by name.")
    return proteins


def _union_panel(
    reference: ad.AnnData, query: ad.AnnData, key: str
) -> tuple[list[str], pd.DataFrame]:
    """The union panel (reference order, then query-only proteins) and both inputs'
    proteins stacked on it, ``(n_reference + n_query, n_union_proteins)`` float32, zero
    where a cell's data set lacks a protein."""
    frames = (_protein_frame(reference, key, "reference"), _protein_frame(query, key, "query"))
    panel = list(dict.fromkeys(str(name) for frame in frames for name in frame.columns))
    stacked = pd.concat(
        [frame.set_axis(frame.columns.astype(str), axis=1).reindex(columns=panel,
                                                                    fill_value=0.0)
         for frame in frames]
    ).astype(np.float32)
    stacked.columns.name = "protein"
    return panel, stacked


def _gene_columns(adata: ad.AnnData, genes: pd.Index, layer: str | None) -> sp.csr_matrix:
    """``X`` (or ``layers[layer]``) restricted to ``genes`` in that order, CSR float32."""
    matrix = adata.X if layer is None else adata.layers[layer]
    columns = adata.var_names.get_indexer(genes)
    return sp.csr_matrix(sp.csr_matrix(matrix)[:, columns], dtype=np.float32)


def _categories(column: pd.Series | None) -> list[str]:
    """A column's categories in order (first appearance for a plain column)."""
    if column is None:
        return []
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories]
    return list(dict.fromkeys(column.dropna().astype(str)))


def _merged_obs(reference: pd.DataFrame, query: pd.DataFrame) -> pd.DataFrame:
    """Both ``obs`` stacked; a column categorical in either stays categorical, with the
    reference's categories first, then the query's new ones."""
    obs = pd.concat([reference, query], join="outer")
    for name in obs.columns:
        parts = (reference.get(name), query.get(name))
        if any(p is not None and isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
            categories = list(dict.fromkeys([*_categories(parts[0]), *_categories(parts[1])]))
            obs[name] = pd.Categorical(obs[name].astype("object").where(
                obs[name].notna(), None), categories=categories)
    return obs


def _unobserved_proteins(
    batches: np.ndarray, values: np.ndarray, panel: list[str]
) -> dict[str, list[str]]:
    """Batch -> the proteins all zero in every one of its cells; ``values`` ``(n, n_panel)``."""
    unobserved: dict[str, list[str]] = {}
    for batch in dict.fromkeys(batches):
        all_zero = ~values[batches == batch].any(axis=0)
        if all_zero.any():
            unobserved[batch] = [panel[k] for k in np.flatnonzero(all_zero)]
    return unobserved
