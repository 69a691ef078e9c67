"""The CITE-seq reference/query simulator of the totalVI-scArches study (paper Fig. 3)."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier

from scprob.data.combine import concat_reference_query
from scprob.data.simulate.cite_seq import (
    CELL_TYPES,
    QUERY_CORE_PROTEINS,
    build_cite_seq_world,
    simulate_cite_seq_query,
    simulate_cite_seq_reference,
)

PROTEINS = "protein_expression"


@pytest.fixture(scope="module")
def reference() -> ad.AnnData:
    return simulate_cite_seq_reference()


@pytest.fixture(scope="module")
def query(reference: ad.AnnData) -> ad.AnnData:
    return simulate_cite_seq_query(reference)


def _assert_count_matrix(adata: ad.AnnData) -> None:
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    assert (adata.X != adata.layers["counts"]).nnz == 0
    assert np.array_equal(adata.X.data, np.round(adata.X.data)) and adata.X.data.min() > 0
    proteins = adata.obsm[PROTEINS].to_numpy()
    assert proteins.dtype == np.float32 and np.array_equal(proteins, np.round(proteins))
    assert proteins.min() >= 0


def _frequencies(adata: ad.AnnData, by: str) -> pd.DataFrame:
    return (adata.obs.groupby(by, observed=True)["cell_type"]
            .value_counts(normalize=True).unstack(fill_value=0.0))


def test_reference_layout(reference: ad.AnnData) -> None:
    assert reference.shape == (6000, 1000)
    assert reference.obsm[PROTEINS].shape == (6000, 200)
    _assert_count_matrix(reference)
    batches = list(reference.obs["batch"].cat.categories)
    assert len(batches) == 24 and batches[:3] == ["P1_0", "P1_3", "P1_7"]
    assert batches[-1] == "P8_7"
    assert reference.obs["donor"].nunique() == 8
    assert set(reference.obs["dataset"]) == {"reference"}
    assert list(reference.obs["cell_type"].cat.categories) == list(CELL_TYPES)
    assert len(CELL_TYPES) == 21
    # Every batch of donor × day holds cells; the rare T subsets are rare but present.
    assert reference.obs["batch"].value_counts().min() > 50
    frequency = reference.obs["cell_type"].value_counts(normalize=True)
    for rare in ("MAIT", "CD4 CTL"):
        assert 0.01 <= frequency[rare] <= 0.03
    for name in ("CD3", "CD4", "CD8a", "CD14", "CD16", "CD19", "CD56", "CD161", "TCR-Va7.2"):
        assert name in reference.obsm[PROTEINS].columns
    for gene in ("CD3E", "SLC4A10", "KLRB1", "PRSS35", "GZMH", "PRF1", "GNLY"):
        assert gene in reference.var_names


def test_exactly_the_masked_batches_have_all_zero_proteins(reference: ad.AnnData) -> None:
    masked = reference.uns["protein_masked_batches"]
    assert len(masked) == 5 and set(masked) <= set(reference.obs["batch"].cat.categories)
    proteins = reference.obsm[PROTEINS]
    batches = reference.obs["batch"].astype(str).to_numpy()
    for batch in reference.obs["batch"].cat.categories:
        all_zero = list(proteins.columns[~proteins.to_numpy()[batches == batch].any(axis=0)])
        if batch in masked:
            assert all_zero == reference.uns["protein_masked_proteins"][batch]
            assert 0.3 * 200 - 1 <= len(all_zero) <= 0.5 * 200 + 1
        else:
            assert all_zero == []
    # The unmasked counts were measured: masking, not a lack of signal, made the zeros.
    unmasked = reference.obsm["protein_expression_unmasked"].to_numpy()
    assert (unmasked[batches == masked[0]].sum(axis=0) > 0).all()


def test_protein_counts_follow_background_and_foreground(reference: ad.AnnData) -> None:
    proteins = reference.obsm["protein_expression_unmasked"]
    cell_type = reference.obs["cell_type"].astype(str)
    t_cells = cell_type.isin(["CD4 Naive", "CD8 Naive", "CD4 TCM"])
    b_cells = cell_type.isin(["B naive", "B memory"])
    # Positive cells are the background scaled up; negative cells keep a background > 0.
    assert proteins.loc[t_cells, "CD3"].median() > 4 * proteins.loc[b_cells, "CD3"].median()
    assert proteins.loc[b_cells, "CD3"].median() > 0
    mait = cell_type == "MAIT"
    assert (proteins.loc[mait, "TCR-Va7.2"].median()
            > 4 * proteins.loc[cell_type == "CD8 TEM", "TCR-Va7.2"].median())


def test_rare_subsets_sit_next_to_their_parents() -> None:
    world = build_cite_seq_world(0)
    log_proportions = world.type_gene_logits - np.log(
        np.exp(world.type_gene_logits).sum(axis=1, keepdims=True))
    distance = ((log_proportions[:, None] - log_proportions[None]) ** 2).sum(axis=-1)
    np.fill_diagonal(distance, np.inf)
    nearest = {t: CELL_TYPES[int(np.argmin(distance[i]))] for i, t in enumerate(CELL_TYPES)}
    assert nearest["MAIT"] == "CD8 TEM"
    assert nearest["CD4 CTL"] == "CD4 TEM"


def test_query_panel_conditions_and_technical_shift(reference: ad.AnnData,
                                                    query: ad.AnnData) -> None:
    assert query.shape == (3000, 1000)
    _assert_count_matrix(query)
    panel = list(query.obsm[PROTEINS].columns)
    assert len(panel) == 35 and len(set(panel)) == 35
    assert set(panel) <= set(reference.obsm[PROTEINS].columns)
    assert set(QUERY_CORE_PROTEINS) <= set(panel)
    assert list(query.var_names) == list(reference.var_names)
    assert set(query.obs["dataset"]) == {"query"}
    assert not set(query.obs["batch"]) & set(reference.obs["batch"])
    donors = query.obs.groupby("donor", observed=True)["condition"].agg(lambda c: set(c))
    assert all(len(c) == 1 for c in donors) and len(donors) == 9
    per_condition = query.obs.groupby("condition", observed=True)["donor"].nunique()
    assert per_condition.to_dict() == {"healthy": 3, "moderate": 3, "severe": 3}
    # The query's technology yields fewer UMIs per cell.
    library = {name: np.median(np.asarray(adata.X.sum(axis=1)).ravel())
               for name, adata in (("query", query), ("reference", reference))}
    ratio = library["query"] / library["reference"]
    assert 0.45 < ratio < 0.8


def test_condition_shifts_mait_down_and_cd4_ctl_up(query: ad.AnnData) -> None:
    # The default query (3 donors per condition, ~330 cells each): healthy vs severe is
    # clear, pooled and in the per-donor medians of the paper's Fig. 3f, g.
    frequency = _frequencies(query, "condition")
    print("MAIT", frequency["MAIT"].round(4).to_dict(),
          "CD4 CTL", frequency["CD4 CTL"].round(4).to_dict())
    assert frequency.loc["severe", "MAIT"] < 0.5 * frequency.loc["healthy", "MAIT"]
    assert frequency.loc["severe", "CD4 CTL"] > 1.5 * frequency.loc["healthy", "CD4 CTL"]
    assert frequency.loc["severe", "CD14 Mono"] > frequency.loc["healthy", "CD14 Mono"]
    per_donor = _frequencies(query, "donor").join(
        query.obs.groupby("donor", observed=True)["condition"].first())
    medians = per_donor.groupby("condition", observed=True)[["MAIT", "CD4 CTL"]].median()
    assert medians.loc["severe", "MAIT"] < medians.loc["healthy", "MAIT"]
    assert medians.loc["severe", "CD4 CTL"] > medians.loc["healthy", "CD4 CTL"]

    # With many donors and cells the ordering is strict across all three conditions.
    large = simulate_cite_seq_query(n_cells=30000, n_proteins=15, n_donors=30, seed=2,
                                    n_genes=100, n_reference_proteins=20)
    frequency = _frequencies(large, "condition")
    for cell_type, sign in (("MAIT", -1), ("CD4 CTL", 1), ("CD14 Mono", 1)):
        ordered = sign * frequency[cell_type].loc[["healthy", "moderate", "severe"]]
        assert ordered.is_monotonic_increasing and ordered.is_unique, cell_type


def _same(a: ad.AnnData, b: ad.AnnData) -> bool:
    return ((a.X != b.X).nnz == 0 and a.obs.equals(b.obs)
            and a.obsm[PROTEINS].equals(b.obsm[PROTEINS]))


def test_deterministic_under_seed_and_world_shared_without_the_reference() -> None:
    small = {"n_cells": 600, "n_genes": 200, "n_proteins": 60}
    first = simulate_cite_seq_reference(**small, seed=3)
    assert _same(first, simulate_cite_seq_reference(**small, seed=3))
    assert not _same(first, simulate_cite_seq_reference(**small, seed=4))
    from_reference = simulate_cite_seq_query(first, n_cells=300, n_proteins=20, seed=5)
    independent = simulate_cite_seq_query(n_cells=300, n_proteins=20, seed=5, world_seed=0,
                                          n_genes=200, n_reference_proteins=60)
    assert _same(from_reference, independent)
    other_world = simulate_cite_seq_query(n_cells=300, n_proteins=20, seed=5, world_seed=1,
                                          n_genes=200, n_reference_proteins=60)
    assert not _same(from_reference, other_world)


def _log_normalised(counts: sp.csr_matrix) -> np.ndarray:
    dense = counts.toarray()
    return np.log1p(1e4 * dense / dense.sum(axis=1, keepdims=True))


def test_random_forest_on_reference_pca_labels_query_cells(reference: ad.AnnData,
                                                           query: ad.AnnData) -> None:
    # The shared world is shared: a classifier fit on the reference alone, on features
    # fit on the reference alone, labels the query far above chance despite the query's
    # technical shift and smaller panel. Masked batches lack proteins, so they sit out.
    keep = ~reference.obs["batch"].isin(reference.uns["protein_masked_batches"]).to_numpy()
    panel = list(query.obsm[PROTEINS].columns)
    reference_rna = _log_normalised(reference.X[keep])
    query_rna = _log_normalised(query.X)
    reference_protein = np.log1p(reference.obsm[PROTEINS].loc[keep, panel].to_numpy())
    query_protein = np.log1p(query.obsm[PROTEINS][panel].to_numpy())
    rna_pca = PCA(30, random_state=0).fit(reference_rna)
    protein_pca = PCA(10, random_state=0).fit(reference_protein)
    classifier = RandomForestClassifier(
        n_estimators=100, class_weight="balanced_subsample", random_state=0, n_jobs=2)
    classifier.fit(np.hstack([rna_pca.transform(reference_rna),
                              protein_pca.transform(reference_protein)]),
                   reference.obs["cell_type"].to_numpy()[keep])
    predicted = classifier.predict(np.hstack([rna_pca.transform(query_rna),
                                              protein_pca.transform(query_protein)]))
    truth = query.obs["cell_type"].to_numpy()
    accuracy = float(np.mean(predicted == truth))
    chance = float(query.obs["cell_type"].value_counts(normalize=True).max())
    print(f"query accuracy {accuracy:.3f} (majority class {chance:.3f})")
    assert accuracy > 0.7 and chance < 0.3


def test_concat_for_the_de_novo_model(reference: ad.AnnData, query: ad.AnnData) -> None:
    # A query with its genes in another order and one gene missing is aligned by name.
    shuffled = query[:, query.var_names[::-1][:-1]].copy()
    combined = concat_reference_query(reference, shuffled)
    assert combined.shape == (9000, 999)
    assert list(combined.var_names) == list(reference.var_names[1:])
    assert sp.isspmatrix_csr(combined.layers["counts"])
    gene = "CD3E"
    np.testing.assert_array_equal(
        combined[combined.obs["dataset"] == "query", gene].X.toarray(),
        query[:, gene].X.toarray())
    proteins = combined.obsm[PROTEINS]
    assert list(proteins.columns) == list(reference.obsm[PROTEINS].columns)
    query_part = proteins.loc[query.obs_names]
    np.testing.assert_array_equal(query_part[query.obsm[PROTEINS].columns].to_numpy(),
                                  query.obsm[PROTEINS].to_numpy())
    missing_in_query = [p for p in proteins.columns if p not in set(query.obsm[PROTEINS])]
    assert (query_part[missing_in_query].to_numpy() == 0).all()
    unobserved = combined.uns["protein_unobserved"]
    assert set(unobserved) == set(query.obs["donor"]) | set(
        reference.uns["protein_masked_batches"])
    assert all(unobserved[d] == missing_in_query for d in query.obs["donor"].unique())
    # Reference batches keep their codes: reference categories first.
    categories = list(combined.obs["batch"].cat.categories)
    assert categories[:24] == list(reference.obs["batch"].cat.categories)
    assert combined.obs.loc[reference.obs_names[:3], "condition"].isna().all()


def test_bad_arguments_raise_clear_errors(reference: ad.AnnData, query: ad.AnnData) -> None:
    with pytest.raises(ValueError, match=re.escape(
            "n_masked_batches=24 must be smaller than n_batches=24: at least one batch has "
            "to measure the whole panel.")):
        simulate_cite_seq_reference(n_masked_batches=24)
    with pytest.raises(ValueError, match="n_batches=10 is not a multiple of n_time_points=3"):
        simulate_cite_seq_reference(n_batches=10)
    with pytest.raises(ValueError, match=re.escape("n_genes must be an integer ≥ 86")):
        simulate_cite_seq_reference(n_genes=20)
    with pytest.raises(ValueError, match=re.escape(
            "n_proteins=250 exceeds the reference panel (200 proteins): the query panel is a "
            "subset of the reference panel.")):
        simulate_cite_seq_query(reference, n_proteins=250)
    with pytest.raises(ValueError, match="condition_log_fold_changes names unknown cell "
                                         r"types \['Neutrophil'\]"):
        simulate_cite_seq_query(condition_log_fold_changes={
            "healthy": {}, "moderate": {}, "severe": {"Neutrophil": 1.0}})
    with pytest.raises(ValueError, match=r"batches \['P1_0'\] occur in both reference and "
                                         "query"):
        renamed = reference[reference.obs["batch"] == "P1_0"].copy()
        renamed.obs_names = [f"x{i}" for i in range(renamed.n_obs)]
        concat_reference_query(reference, renamed)
    without_proteins = query.copy()
    del without_proteins.obsm[PROTEINS]
    with pytest.raises(ValueError, match=r"the query has no adata.obsm\['protein_expression'\]"):
        concat_reference_query(reference, without_proteins)
