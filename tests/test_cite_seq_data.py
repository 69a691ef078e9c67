"""The features × cells CSV reader and the ADT preprocessing / coarse gating of
``scprob.data.cite_seq``, on hand-made tables and on the real PBMC CITE-seq files (those
tests are skipped when ../shared/data is absent)."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.data.cite_seq import (
    COARSE_TYPES,
    antibody_target,
    clr_normalize,
    coarse_types_from_adt,
    otsu_threshold,
    remove_isotype_controls,
    sum_antibody_clones,
)
from scprob.data.io import read_cite_seq_csv, read_h5ad_cite_seq
from tests.conftest import SHARED_DATA

PBMC10K = SHARED_DATA / "pbmc10k_cite_seq_totalvi_paper"
PBMC_H5AD = SHARED_DATA / "pbmc_cite_seq_10x"
T_TYPES = ["CD4 T", "CD8 T"]


def _require_shared_data() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared test data folder {SHARED_DATA} is absent")


@pytest.fixture(scope="module")
def pbmc10k() -> ad.AnnData:
    _require_shared_data()
    return read_cite_seq_csv(PBMC10K / "pbmc10k_harmo_rna.csv.gz",
                             PBMC10K / "pbmc10k_harmo_pro.csv.gz")


@pytest.fixture(scope="module")
def pbmc10k_types(pbmc10k: ad.AnnData) -> pd.Series:
    return coarse_types_from_adt(pbmc10k.obsm["protein_expression"])


def _fractions(types: pd.Series) -> pd.Series:
    return types.value_counts(normalize=True)


def _clr_by_target(proteins: pd.DataFrame) -> pd.DataFrame:
    clr = clr_normalize(proteins)
    return clr.set_axis([antibody_target(c) for c in clr.columns], axis=1)


# ------------------------------------------------------------------ real PBMC10k CSV pair


def test_pbmc10k_csv_has_the_documented_layout(pbmc10k: ad.AnnData) -> None:
    assert pbmc10k.shape == (6855, 4000)
    assert sp.isspmatrix_csr(pbmc10k.X) and pbmc10k.X.dtype == np.float32
    assert (pbmc10k.X != pbmc10k.layers["counts"]).nnz == 0
    assert pbmc10k.var_names.is_unique and pbmc10k.var_names[0] == "AL645608.8"
    assert pbmc10k.X.max() == 7183  # the README's maximum
    assert (pbmc10k.X.data > 0).all() and np.array_equal(pbmc10k.X.data,
                                                         np.round(pbmc10k.X.data))


def test_pbmc10k_proteins_are_the_same_cells_as_the_rna(pbmc10k: ad.AnnData) -> None:
    proteins = pbmc10k.obsm["protein_expression"]
    assert proteins.shape == (6855, 14)
    assert (proteins.dtypes == np.float32).all() and proteins.columns.name == "protein"
    assert proteins.columns[0] == "CD127_TotalSeqB"
    values = proteins.to_numpy()
    assert (values >= 0).all() and np.array_equal(values, np.round(values))
    # The protein table's own cell order is the RNA table's (README), so nothing moved.
    header = pd.read_csv(PBMC10K / "pbmc10k_harmo_pro.csv.gz", index_col=0, nrows=0)
    assert proteins.index.equals(pbmc10k.obs_names)
    assert list(header.columns) == list(pbmc10k.obs_names)
    # First cell's CD127 and CD14 counts as written in the file.
    assert proteins.iloc[0][["CD127_TotalSeqB", "CD14_TotalSeqB"]].tolist() == [7.0, 491.0]


def test_pbmc10k_coarse_types_match_known_pbmc_composition(pbmc10k_types: pd.Series) -> None:
    """Healthy-donor PBMCs: T cells about 45–70 %, CD4:CD8 about 1–4, monocytes 10–30 %,
    B cells 5–15 %, NK cells 5–20 %."""
    assert tuple(pbmc10k_types.cat.categories) == COARSE_TYPES
    fractions = _fractions(pbmc10k_types)
    t_cells = fractions[T_TYPES].sum()
    assert 0.40 < t_cells < 0.75
    assert t_cells > fractions[["B", "NK", "Monocyte"]].sum()  # majority of assigned cells
    assert 1.0 < fractions["CD4 T"] / fractions["CD8 T"] < 4.0
    assert 0.05 <= fractions["Monocyte"] <= 0.35
    assert 0.05 <= fractions["B"] <= 0.20
    assert 0.03 <= fractions["NK"] <= 0.25
    assert fractions["unassigned"] < 0.15


@pytest.mark.parametrize(("target", "cell_type"), [
    ("CD19", "B"), ("CD14", "Monocyte"), ("CD4", "CD4 T"), ("CD8a", "CD8 T"),
    ("CD56", "NK"), ("CD16", "NK"),
])
def test_pbmc10k_marker_clr_is_highest_in_its_type(
    pbmc10k: ad.AnnData, pbmc10k_types: pd.Series, target: str, cell_type: str
) -> None:
    means = _clr_by_target(pbmc10k.obsm["protein_expression"]).groupby(
        pbmc10k_types, observed=True)[target].mean()
    assert means.idxmax() == cell_type, means.round(2).to_dict()


def test_pbmc10k_cd3_separates_t_cells(pbmc10k: ad.AnnData, pbmc10k_types: pd.Series) -> None:
    means = _clr_by_target(pbmc10k.obsm["protein_expression"]).groupby(
        pbmc10k_types, observed=True)["CD3"].mean()
    assert means[T_TYPES].min() > means.drop(T_TYPES).max()


@pytest.mark.parametrize(("gene", "cell_type"), [
    ("CD79A", "B"), ("LYZ", "Monocyte"), ("GNLY", "NK"), ("CD8B", "CD8 T"),
])
def test_pbmc10k_adt_types_agree_with_rna_markers(
    pbmc10k: ad.AnnData, pbmc10k_types: pd.Series, gene: str, cell_type: str
) -> None:
    """The RNA never enters the gating, so its marker genes check the labels independently."""
    counts = pbmc10k[:, gene].X.toarray().ravel()
    library = np.asarray(pbmc10k.X.sum(axis=1)).ravel()
    expression = pd.Series(np.log1p(counts / library * 1e4), index=pbmc10k.obs_names)
    means = expression.groupby(pbmc10k_types, observed=True).mean()
    assert means.idxmax() == cell_type, means.round(2).to_dict()


# ------------------------------------------------------------------ real 5k h5ad (29 ADTs)


def test_pbmc5k_h5ad_gating_gives_a_plausible_composition() -> None:
    _require_shared_data()
    proteins = read_h5ad_cite_seq(PBMC_H5AD / "pbmc_5k_protein_v3.h5ad").obsm[
        "protein_expression"]
    assert proteins.shape == (200, 29)
    types = coarse_types_from_adt(proteins)
    fractions = _fractions(types)
    assert (fractions[list(COARSE_TYPES[:-1])] > 0).all()  # 200 cells hold every type
    assert 0.30 < fractions[T_TYPES].sum() < 0.80
    assert fractions["CD4 T"] > fractions["CD8 T"]
    assert 0.10 <= fractions["Monocyte"] <= 0.45
    assert fractions["B"] >= 0.02 and fractions["NK"] >= 0.02
    assert fractions["unassigned"] < 0.20
    clr = _clr_by_target(proteins)
    assert clr.groupby(types, observed=True)["CD19"].mean().idxmax() == "B"
    assert clr.groupby(types, observed=True)["CD14"].mean().idxmax() == "Monocyte"


# ------------------------------------------------------------------ CSV reader, synthetic


def _write_table(path: Path, values: list[list[float]], rows: list[str],
                 cells: list[str]) -> Path:
    pd.DataFrame(values, index=rows, columns=cells).to_csv(path)
    return path


@pytest.fixture
def small_pair(tmp_path: Path) -> tuple[Path, Path]:
    rna = _write_table(tmp_path / "rna.csv.gz", [[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]],
                       ["GeneA", "GeneA"], ["c1", "c2", "c3"])
    protein = _write_table(tmp_path / "pro.csv.gz", [[5.0, 7.0, 9.0]], ["CD3_TotalSeqB"],
                           ["c3", "c1", "c2"])
    return rna, protein


def test_csv_reader_reorders_proteins_to_the_rna_cells(small_pair: tuple[Path, Path]) -> None:
    adata = read_cite_seq_csv(*small_pair)
    assert list(adata.obs_names) == ["c1", "c2", "c3"]
    assert list(adata.var_names) == ["GeneA", "GeneA-1"]
    np.testing.assert_array_equal(adata.X.toarray(), [[1, 0], [0, 2], [3, 0]])
    proteins = adata.obsm["protein_expression"]
    assert proteins["CD3_TotalSeqB"].tolist() == [7.0, 9.0, 5.0]
    assert proteins.index.name == "barcode" and proteins.columns.name == "protein"


def test_csv_reader_rejects_tables_of_different_cells(tmp_path: Path) -> None:
    rna = _write_table(tmp_path / "rna.csv", [[1.0, 2.0, 3.0]], ["G"], ["c1", "c2", "c3"])
    protein = _write_table(tmp_path / "pro.csv", [[1.0, 2.0]], ["CD3"], ["c1", "x9"])
    message = (
        f"the RNA table {str(rna)!r} and the protein table {str(protein)!r} name different "
        "cells: 2 of the 3 RNA cells are not in the protein table (e.g. 'c2') and 1 of the "
        "2 protein cells are not in the RNA table (e.g. 'x9'). Pass the RNA and protein "
        "tables of the same cells."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_cite_seq_csv(rna, protein)


@pytest.mark.parametrize(("value", "kind"), [(2.5, "not an integer"), (-1.0, "negative")])
def test_csv_reader_rejects_values_that_are_not_counts(
    tmp_path: Path, value: float, kind: str
) -> None:
    rna = _write_table(tmp_path / "rna.csv", [[1.0, 2.0], [3.0, value]], ["G1", "G2"],
                       ["c1", "c2"])
    protein = _write_table(tmp_path / "pro.csv", [[1.0, 2.0]], ["CD3"], ["c1", "c2"])
    message = (
        f"{str(rna)!r} must hold raw counts (non-negative integers), but the value {value!r} "
        f"in row 'G2', column 'c2' is {kind}. Pass raw counts, not normalised or "
        "log-transformed values."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_cite_seq_csv(rna, protein)


# ------------------------------------------------------------------ ADT preprocessing


@pytest.mark.parametrize(("name", "target"), [
    ("CD8a_TotalSeqB", "CD8a"), ("CD3_TotalSeqA", "CD3"), ("CD4-TotalSeqB", "CD4"),
    ("HLA-DR_TotalSeqC", "HLA-DR"), ("CD19_ADT", "CD19"), ("PD-1", "PD-1"),
])
def test_antibody_target_strips_the_panel_suffix(name: str, target: str) -> None:
    assert antibody_target(name) == target


def test_isotype_controls_are_removed_and_clones_summed() -> None:
    names = ["CD3-1", "IgG1_control_TotalSeqB", "HLA-DR", "CD4-1", "Mouse-IgG1", "CD3-2",
             "TCR-V-alpha-7.2", "Rat-IgG2b", "CD45RA", "PD-1", "CD4-2", "mouse_isotype_ctrl",
             "IgD", "CD3"]
    proteins = pd.DataFrame([np.arange(14) + 1, np.arange(14) * 10], index=["a", "b"],
                            columns=pd.Index(names, name="protein"))
    kept = remove_isotype_controls(proteins)
    assert list(kept.columns) == ["CD3-1", "HLA-DR", "CD4-1", "CD3-2", "TCR-V-alpha-7.2",
                                  "CD45RA", "PD-1", "CD4-2", "IgD", "CD3"]
    summed = sum_antibody_clones(kept)
    # CD3-1 + CD3-2 + the bare CD3 (cols 1, 6, 14); CD4-1 + CD4-2 (cols 4, 11).
    expected = pd.DataFrame(
        {"CD3": [1 + 6 + 14, 0 + 50 + 130], "HLA-DR": [3, 20], "CD4": [4 + 11, 30 + 100],
         "TCR-V-alpha-7.2": [7, 60], "CD45RA": [9, 80], "PD-1": [10, 90], "IgD": [13, 120]},
        index=["a", "b"],
    ).rename_axis(columns="protein")
    pd.testing.assert_frame_equal(summed, expected)


def test_clone_summing_leaves_a_panel_without_clones_alone() -> None:
    proteins = pd.DataFrame(np.ones((3, 4), dtype=np.float32),
                            columns=["CD3_TotalSeqB", "PD-1_TotalSeqB", "HLA-DR", "CD8-1"])
    pd.testing.assert_frame_equal(sum_antibody_clones(proteins), proteins)


def test_otsu_threshold_falls_between_two_modes() -> None:
    values = np.r_[np.full(90, -1.0), np.full(10, 3.0), [-0.9, 2.8]]
    assert otsu_threshold(values) == pytest.approx((-0.9 + 2.8) / 2)


# ------------------------------------------------------------------ gating, synthetic

# Marker counts per type (others background 5): the rules of coarse_types_from_adt.
_PROFILES = {
    "B": {"CD19": 400},
    "CD4 T": {"CD3": 400, "CD4": 400},
    "CD8 T": {"CD3": 400, "CD8a": 400},
    "NK": {"CD56": 400, "CD16": 400},
    "Monocyte": {"CD14": 400, "CD4": 60},
    "unassigned": {"CD3": 400, "CD4": 400, "CD8a": 400},  # CD4+ CD8+ T
}
_PANEL = ["CD3_TotalSeqB", "CD4_TotalSeqB", "CD8a_TotalSeqB", "CD14_TotalSeqB",
          "CD19_TotalSeqB", "CD56_TotalSeqB", "CD16_TotalSeqB", "CD45RA_TotalSeqB"]


def _synthetic_panel(n_per_type: int = 20, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for cell_type, markers in _PROFILES.items():
        for _ in range(n_per_type):
            means = [markers.get(antibody_target(c), 5) for c in _PANEL]
            rows.append(rng.poisson(means))
            truth.append(cell_type)
    index = [f"cell{i}" for i in range(len(rows))]
    return pd.DataFrame(rows, index=index, columns=_PANEL).astype(np.float32), truth


def test_gating_recovers_the_synthetic_types() -> None:
    proteins, truth = _synthetic_panel()
    types = coarse_types_from_adt(proteins)
    assert types.index.equals(proteins.index)
    assert tuple(types.cat.categories) == COARSE_TYPES
    assert types.astype(str).tolist() == truth
    assert set(types.attrs["thresholds"]) == {"CD3", "CD4", "CD8", "CD14", "CD19", "CD56",
                                              "CD16"}


def test_gating_names_the_missing_markers() -> None:
    proteins, _ = _synthetic_panel()
    proteins = proteins.drop(columns=["CD8a_TotalSeqB", "CD56_TotalSeqB"])
    message = (
        "coarse_types_from_adt needs the ADT markers ['CD8/CD8a', 'CD56'] (it gates on CD3, "
        "CD4, CD8/CD8a, CD14, CD19, CD56, CD16), but the panel's targets are ['CD3', 'CD4', "
        "'CD14', 'CD19', 'CD16', 'CD45RA']. Pass an antibody panel measuring them."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        coarse_types_from_adt(proteins)


def test_gating_asks_to_sum_clones_first() -> None:
    proteins, _ = _synthetic_panel()
    proteins = proteins.rename(columns={"CD3_TotalSeqB": "CD3-1"})
    proteins["CD3-2"] = proteins["CD3-1"]
    with pytest.raises(ValueError, match=r"\['CD3'\].*sum antibody clones such as CD3-1/CD3-2"):
        coarse_types_from_adt(proteins)
    types = coarse_types_from_adt(sum_antibody_clones(proteins))
    assert types.astype(str).tolist() == _synthetic_panel()[1]


def test_gating_rejects_normalised_values() -> None:
    proteins, _ = _synthetic_panel()
    proteins.iloc[2, 1] = 0.5
    with pytest.raises(ValueError, match=r"cell 'cell2', protein 'CD4_TotalSeqB' holds 0\.5"):
        coarse_types_from_adt(proteins)


def test_real_pair_for_the_scarches_study(pbmc10k: ad.AnnData) -> None:
    """The scArches study's real inputs: gated types without unassigned cells, distinct
    cell names, the reference's seurat_v3 genes (the query cut to them) and the columns
    every later rule reads."""
    from scprob.bench.scarches import LATENT_OBS_COLUMNS, real_cite_seq_pair
    from scprob.data.io import read_h5ad_cite_seq

    query = read_h5ad_cite_seq(PBMC_H5AD / "pbmc_5k_protein_v3.h5ad")
    reference, mapped = real_cite_seq_pair(pbmc10k, query, n_top_genes=500)
    assert reference.n_vars == 500
    assert set(mapped.var_names) <= set(reference.var_names)
    assert mapped.n_vars >= 450  # the 5k panel measured almost all of them
    assert reference.n_obs == 6855 - 274 and mapped.n_obs == 200 - 13
    for adata, name in ((reference, "pbmc10k"), (mapped, "pbmc5k")):
        assert "unassigned" not in set(adata.obs["cell_type"])
        assert adata.obs_names.str.startswith(f"{name}_").all()
        assert (adata.obs["batch"] == name).all() and (adata.obs["donor"] == name).all()
    assert reference.obs_names.intersection(mapped.obs_names).empty
    assert (reference.obs["dataset"] == "reference").all()
    assert (mapped.obs["dataset"] == "query").all()
    assert (mapped.obs["condition"] == "healthy").all()
    assert set(LATENT_OBS_COLUMNS) - {"condition"} <= set(reference.obs.columns)
    assert mapped.obsm["protein_expression"].shape[1] == 29
