"""Stacking a reference and a query for de novo totalVI (scprob.data.combine)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.data.combine import concat_reference_query

PROTEINS = "protein_expression"


def _adata(prefix: str, genes: list[str], proteins: list[str], batches: list[str],
           offset: float) -> ad.AnnData:
    n_cells = len(batches)
    counts = offset + np.arange(n_cells * len(genes), dtype=np.float32).reshape(n_cells, -1)
    adata = ad.AnnData(
        X=sp.csr_matrix(counts),
        obs=pd.DataFrame({"batch": pd.Categorical(batches)},
                         index=[f"{prefix}{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=genes),
    )
    adata.layers["counts"] = adata.X.copy()
    adata.obsm[PROTEINS] = pd.DataFrame(
        1.0 + np.arange(n_cells * len(proteins)).reshape(n_cells, -1),
        index=adata.obs_names, columns=proteins)
    return adata


@pytest.fixture
def pair() -> tuple[ad.AnnData, ad.AnnData]:
    reference = _adata("r", ["g1", "g2", "g3", "g4"], ["A", "B", "C"], ["r1", "r1", "r2"], 0.0)
    reference.obsm[PROTEINS].loc["r2", "C"] = 0.0  # batch r2 did not measure C
    reference.obs["level"] = pd.Categorical(["x", "y", "x"], categories=["y", "x"])
    query = _adata("q", ["g4", "g9", "g2"], ["C", "D"], ["q1", "q2"], 100.0)
    query.obs["condition"] = ["healthy", "severe"]
    return reference, query


def test_genes_proteins_and_batches_are_aligned_by_name(
    pair: tuple[ad.AnnData, ad.AnnData]
) -> None:
    reference, query = pair
    combined = concat_reference_query(reference, query)

    assert list(combined.var_names) == ["g2", "g4"]  # shared, in the reference's order
    assert list(combined.obs_names) == ["r0", "r1", "r2", "q0", "q1"]
    assert sp.isspmatrix_csr(combined.X) and combined.X.dtype == np.float32
    expected = np.vstack([reference[:, ["g2", "g4"]].X.toarray(),
                          query[:, ["g2", "g4"]].X.toarray()])
    np.testing.assert_array_equal(combined.X.toarray(), expected)
    np.testing.assert_array_equal(combined.layers["counts"].toarray(), expected)

    proteins = combined.obsm[PROTEINS]
    assert list(proteins.columns) == ["A", "B", "C", "D"]
    assert proteins.dtypes.eq(np.float32).all()
    np.testing.assert_array_equal(proteins.loc[["q0", "q1"], ["A", "B"]], 0.0)
    np.testing.assert_array_equal(proteins.loc[["q0", "q1"], ["C", "D"]],
                                  query.obsm[PROTEINS].to_numpy())
    assert combined.uns["protein_unobserved"] == {
        "r2": ["C", "D"], "r1": ["D"], "q1": ["A", "B"], "q2": ["A", "B"]}


def test_categories_keep_the_reference_first(pair: tuple[ad.AnnData, ad.AnnData]) -> None:
    reference, query = pair
    combined = concat_reference_query(reference, query)
    assert list(combined.obs["batch"].cat.categories) == ["r1", "r2", "q1", "q2"]
    assert list(combined.obs["level"].cat.categories) == ["y", "x"]
    assert combined.obs.loc[["q0", "q1"], "level"].isna().all()
    assert combined.obs.loc[["r0", "r1", "r2"], "condition"].isna().all()


def test_inputs_that_cannot_be_stacked_are_refused(pair: tuple[ad.AnnData, ad.AnnData]) -> None:
    reference, query = pair
    same_cells = query.copy()
    same_cells.obs_names = ["r0", "q1"]
    with pytest.raises(ValueError, match=r"1 obs names occur in both reference and query"):
        concat_reference_query(reference, same_cells)
    no_genes = query.copy()
    no_genes.var_names = ["h1", "h2", "h3"]
    with pytest.raises(ValueError, match="share no gene names"):
        concat_reference_query(reference, no_genes)
    array_proteins = query.copy()
    array_proteins.obsm[PROTEINS] = array_proteins.obsm[PROTEINS].to_numpy()
    with pytest.raises(ValueError, match="it must be a pandas DataFrame"):
        concat_reference_query(reference, array_proteins)
    with pytest.raises(ValueError, match="the reference has no obs column 'donor'"):
        concat_reference_query(reference, query, batch_key="donor")
