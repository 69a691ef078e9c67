"""The features × cells CSV reader and the ADT preprocessing / coarse gating of
``scprob.data.cite_seq``, on hand-made tables and on the real PBMC CITE-seq files (those
tests are skipped when ../shared/data is absent)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.data import cite_seq
from scprob.data.cite_seq import (
    COARSE_TYPES,
    HAO_CLONE_EXCLUDED,
    HAO_CONTROL_MARKS,
    antibody_target,
    clr_normalize,
    coarse_types_from_adt,
    drop_columns_containing,
    otsu_threshold,
    prepare_covid_query,
    prepare_hao_reference,
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


def _assert_one_named_sample(adata: ad.AnnData, name: str, dataset: str) -> None:
    assert (adata.obs["dataset"] == dataset).all()
    assert "unassigned" not in set(adata.obs["cell_type"])
    assert adata.obs_names.str.startswith(f"{name}_").all()
    assert (adata.obs["batch"] == name).all() and (adata.obs["donor"] == name).all()


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
    _assert_one_named_sample(reference, "pbmc10k", "reference")
    _assert_one_named_sample(mapped, "pbmc5k", "query")
    assert reference.obs_names.intersection(mapped.obs_names).empty
    assert (mapped.obs["condition"] == "healthy").all()
    assert set(LATENT_OBS_COLUMNS) - {"condition"} <= set(reference.obs.columns)
    assert mapped.obsm["protein_expression"].shape[1] == 29


# ------------------------------------------------------------------ clone exclusion


def test_excluded_stems_are_not_summed() -> None:
    names = ["CD4-1", "Notch-1", "TCR-1", "CD4-2", "Notch-2", "TCR-2", "HLA-DR"]
    proteins = pd.DataFrame([np.arange(1, 8)], columns=names, dtype=np.float32)
    summed = sum_antibody_clones(proteins, exclude=HAO_CLONE_EXCLUDED)
    assert list(summed.columns) == ["CD4", "Notch-1", "TCR-1", "Notch-2", "TCR-2", "HLA-DR"]
    assert summed.iloc[0].tolist() == [1 + 4, 2, 3, 5, 6, 7]
    # Without the exclusion every numbered pair is summed (the rule of clone_groups).
    assert list(sum_antibody_clones(proteins).columns) == ["CD4", "Notch", "TCR", "HLA-DR"]


def test_exclude_must_not_be_a_bare_string() -> None:
    proteins = pd.DataFrame([[1, 2]], columns=["Notch-1", "Notch-2"])
    message = ("exclude must be a sequence of stems, not the string 'Notch'; pass ('Notch',) "
               "to exclude one stem.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        sum_antibody_clones(proteins, exclude="Notch")


def test_the_papers_igg_rule_and_the_isotype_rule_agree_on_the_hao_controls() -> None:
    controls = ["Mouse-IgG1", "Mouse-IgG2a", "Mouse-IgG2b", "Rat-IgG1", "Rat-IgG2a",
                "Rat-IgG2b", "Hamster-IgG"]
    targets = ["CD4", "IgD", "IgM", "HLA-DR", "TCR-V-alpha-7.2"]
    proteins = pd.DataFrame(np.ones((2, 12)), columns=controls + targets)
    assert list(drop_columns_containing(proteins, HAO_CONTROL_MARKS).columns) == targets
    assert list(remove_isotype_controls(proteins).columns) == targets


# ------------------------------------------------------------------ the paper's reference

# Panel: two clone pairs of which only CD4 is summed, two IgG controls, and fillers making
# 160 columns (159 once CD4 is summed) so that the "> 150 detected" filter bites.
_HAO_HEAD = ["CD4-1", "Notch-1", "HLA-DR", "Rat-IgG2b", "CD4-2", "Notch-2", "TCR-1",
             "TCR-2", "Mouse-IgG1"]
_HAO_PANEL = _HAO_HEAD + [f"P{i}" for i in range(160 - len(_HAO_HEAD))]
_HAO_KEPT_PANEL = ["CD4", "Notch-1", "HLA-DR", "Notch-2", "TCR-1", "TCR-2",
                   *_HAO_PANEL[len(_HAO_HEAD):]]
_BATCHES = [f"P{d}_{t}" for d in (1, 2, 3, 4) for t in (0, 3, 7)]  # 12 donor × day batches
_GENES = ["MT-CO1", "MT-ND1", *(f"GENE{i}" for i in range(48))]
# Cells engineered to fail one filter each (or to sit just inside one), and the filter
# that removes them; every other cell passes all filters.
_REMOVED_BY = {
    "low_total": "log protein total > 7.6",  # 160 proteins × 1 count: log 5.1
    "high_total": "log protein total < 10.3",  # 160 × 200: log 10.37
    "detected_150": "proteins detected > 150",  # 150 of the 159 summed columns nonzero
    "doublet": "celltype.l2 != 'Doublet'",
    "mt_15": "percent MT- counts < 12",  # 15 of 100 RNA counts in MT- genes
    "mt_12": "percent MT- counts < 12",  # exactly 12 %: the bound is strict
    "no_rna": "percent MT- counts < 12",  # no RNA counts: the percent is undefined
}
_KEPT_ON_PURPOSE = ["detected_151", "mt_11"]  # 151 detected counting the controls; 11 %


def _set_rna(x: np.ndarray, i: int, mt: int, total: int) -> None:
    x[i] = 0
    x[i, 0] = mt
    rest = total - mt
    x[i, 2:] = rest // 48
    x[i, 2:2 + rest % 48] += 1


def _engineer(proteins: np.ndarray, x: np.ndarray, labels: list[str], names: list[str]
              ) -> None:
    """Overwrite the first cells with the engineered ones of _REMOVED_BY/_KEPT_ON_PURPOSE."""
    special = [*_REMOVED_BY, *_KEPT_ON_PURPOSE]
    names[:len(special)] = special
    where = {name: i for i, name in enumerate(special)}
    proteins[where["low_total"]] = 1
    proteins[where["high_total"]] = 200
    filler = len(_HAO_HEAD)
    # The summed panel has 159 columns: 9 zero fillers leave 150 detected, 8 leave 151
    # (both IgG controls among them, counted as in the paper).
    proteins[where["detected_150"], filler:filler + 9] = 0
    proteins[where["detected_151"], filler:filler + 8] = 0
    labels[where["doublet"]] = "Doublet"
    _set_rna(x, where["mt_15"], 15, 100)
    _set_rna(x, where["mt_12"], 12, 100)
    _set_rna(x, where["mt_11"], 11, 100)
    x[where["no_rna"]] = 0


def _hao_like(n_cells: int = 300, seed: int = 0) -> ad.AnnData:
    """A pbmc_seurat_v4.h5ad-shaped AnnData: raw counts in X (CSR), proteins a DataFrame in
    obsm["protein_counts"], the file's obs columns."""
    rng = np.random.default_rng(seed)
    proteins = rng.poisson(20, (n_cells, len(_HAO_PANEL))).astype(np.float64)
    proteins[proteins == 0] = 1  # normal cells detect every protein
    x = rng.poisson(2, (n_cells, len(_GENES))).astype(np.float64)
    x[:, :2] = rng.poisson(0.3, (n_cells, 2))  # about 0.3 % MT- counts
    labels = list(rng.choice(["CD4 TCM", "CD14 Mono", "NK", "B naive"], n_cells))
    names = [f"cell{i}" for i in range(n_cells)]
    _engineer(proteins, x, labels, names)
    batches = [_BATCHES[i % len(_BATCHES)] for i in range(n_cells)]
    obs = pd.DataFrame({
        "nCount_ADT": proteins.sum(axis=1), "orig.ident": pd.Categorical(batches),
        "lane": "L1", "donor": [b.split("_")[0] for b in batches],
        "time": [b.split("_")[1] for b in batches], "celltype.l1": "x",
        "celltype.l2": labels, "celltype.l3": labels,
    }, index=names)
    adata = ad.AnnData(sp.csr_matrix(x, dtype=np.float32), obs=obs,
                       var=pd.DataFrame(index=_GENES))
    adata.obsm["protein_counts"] = pd.DataFrame(proteins, index=names, columns=_HAO_PANEL)
    return adata


@pytest.fixture(scope="module")
def hao() -> ad.AnnData:
    return _hao_like()


@pytest.fixture(scope="module")
def hao_reference(hao: ad.AnnData) -> ad.AnnData:
    return prepare_hao_reference(hao)


def test_reference_filters_remove_exactly_the_engineered_cells(
    hao: ad.AnnData, hao_reference: ad.AnnData
) -> None:
    removed = set(hao.obs_names) - set(hao_reference.obs_names)
    assert removed == set(_REMOVED_BY)
    assert set(_KEPT_ON_PURPOSE) <= set(hao_reference.obs_names)
    expected_counts = pd.Series(_REMOVED_BY).value_counts().to_dict()
    assert hao_reference.uns["qc_removed"] == {
        name: expected_counts.get(name, 0) for name in dict.fromkeys(_REMOVED_BY.values())}
    assert list(hao_reference.obs_names) == [n for n in hao.obs_names if n not in removed]


def test_reference_logs_each_filters_removals(
    hao: ad.AnnData, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=cite_seq.__name__):
        prepare_hao_reference(hao)
    assert "reference: percent MT- counts < 12 removed 3 cells, 293 remain" in caplog.messages
    assert "reference: log protein total > 7.6 removed 1 cells, 299 remain" in caplog.messages


def test_reference_sums_cd4_keeps_notch_and_tcr_and_drops_controls(
    hao: ad.AnnData, hao_reference: ad.AnnData
) -> None:
    proteins = hao_reference.obsm["protein_expression"]
    assert list(proteins.columns) == _HAO_KEPT_PANEL
    unmasked = ~hao_reference.obs["batch"].isin(hao_reference.uns["masked_batches"])
    raw = hao.obsm["protein_counts"].loc[hao_reference.obs_names[unmasked.to_numpy()]]
    kept = proteins[unmasked.to_numpy()]
    np.testing.assert_array_equal(kept["CD4"], raw["CD4-1"] + raw["CD4-2"])
    for name in ["Notch-1", "Notch-2", "TCR-1", "TCR-2", "HLA-DR", "P0"]:
        np.testing.assert_array_equal(kept[name], raw[name])


def test_reference_masks_the_proteins_of_five_seeded_batches(
    hao: ad.AnnData, hao_reference: ad.AnnData
) -> None:
    masked = hao_reference.uns["masked_batches"]
    chosen = np.random.default_rng(0).permutation(sorted(_BATCHES))[:5]
    assert masked == sorted(chosen) and len(set(masked)) == 5
    proteins = hao_reference.obsm["protein_expression"].to_numpy()
    in_masked = hao_reference.obs["batch"].isin(masked).to_numpy()
    assert in_masked.sum() > 0 and (proteins[in_masked] == 0).all()
    # Every other cell keeps its summed counts, controls dropped.
    summed = sum_antibody_clones(hao.obsm["protein_counts"], exclude=HAO_CLONE_EXCLUDED)
    expected = drop_columns_containing(summed, HAO_CONTROL_MARKS).loc[hao_reference.obs_names]
    np.testing.assert_array_equal(proteins[~in_masked], expected[~in_masked])
    assert (proteins[~in_masked].sum(axis=1) > 0).all()
    again = prepare_hao_reference(hao)
    assert again.uns["masked_batches"] == masked
    pd.testing.assert_frame_equal(again.obsm["protein_expression"],
                                  hao_reference.obsm["protein_expression"])
    others = {tuple(prepare_hao_reference(hao, seed=s).uns["masked_batches"]) for s in (1, 2)}
    assert tuple(masked) not in others
    assert prepare_hao_reference(hao, n_masked_batches=0).uns["masked_batches"] == []


def _assert_study_layout(out: ad.AnnData, source: ad.AnnData) -> None:
    """X and layers["counts"]: equal CSR float32 copies of the source's counts; proteins a
    float32 DataFrame indexed by the cells."""
    assert sp.isspmatrix_csr(out.X) and out.X.dtype == np.float32
    assert sp.isspmatrix_csr(out.layers["counts"]) and out.layers["counts"] is not out.X
    assert (out.X != out.layers["counts"]).nnz == 0
    np.testing.assert_array_equal(out.X.toarray(), source[out.obs_names].X.toarray())
    proteins = out.obsm["protein_expression"]
    assert isinstance(proteins, pd.DataFrame) and (proteins.dtypes == np.float32).all()
    assert proteins.index.equals(out.obs_names) and proteins.columns.name == "protein"


def test_reference_has_the_study_layout(hao: ad.AnnData, hao_reference: ad.AnnData) -> None:
    out = hao_reference
    _assert_study_layout(out, hao)
    source = hao.obs.loc[out.obs_names]
    assert out.obs["batch"].tolist() == source["orig.ident"].astype(str).tolist()
    assert out.obs["donor"].tolist() == source["donor"].tolist()
    assert out.obs["cell_type"].tolist() == source["celltype.l2"].tolist()
    assert (out.obs["dataset"] == "reference").all()
    assert set(hao.obs.columns) <= set(out.obs.columns)
    assert "Doublet" not in set(out.obs["cell_type"])
    assert list(hao.obsm["protein_counts"].columns) == _HAO_PANEL  # the input is untouched


def test_reference_rejects_more_masked_batches_than_batches(hao: ad.AnnData) -> None:
    message = ("n_masked_batches=13 is not between 0 and the 12 batches left after "
               "filtering. Pass a number of batches in that range.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prepare_hao_reference(hao, n_masked_batches=13)


# ------------------------------------------------------------------ the paper's query

_SU_PANEL = [*(f"CD{i}" for i in range(1, 34)), "Isotype1", "Isotype2", "Isotype3",
             "Isotype4", "Anti-A", "Anti-B"]  # 39 columns, as covid_cite.h5ad


def _covid_like(n_cells: int = 120, seed: int = 0) -> ad.AnnData:
    """A covid_cite.h5ad-shaped AnnData: raw counts in X, 39 antibodies in obsm["pro_exp"]."""
    rng = np.random.default_rng(seed)
    names = [f"q{i}" for i in range(n_cells)]
    obs = pd.DataFrame({
        "orig.ident": "s", "set": [f"set{i % 2 + 1}" for i in range(n_cells)],
        "subj_code": [f"subj{i % 4}" for i in range(n_cells)],
        "Resp": [("Healthy", "Mild", "Severe")[i % 3] for i in range(n_cells)],
        "final_clust_review": rng.choice(["CD4 T", "Monocyte", "B"], n_cells),
    }, index=names)
    adata = ad.AnnData(rng.poisson(1, (n_cells, 60)).astype(np.float32), obs=obs,
                       var=pd.DataFrame(index=[f"G{i}" for i in range(60)]))
    adata.obsm["pro_exp"] = pd.DataFrame(rng.poisson(5, (n_cells, 39)), index=names,
                                         columns=_SU_PANEL)
    return adata


def test_query_drops_controls_and_sets_the_study_columns() -> None:
    adata = _covid_like()
    out = prepare_covid_query(adata, remove_doublets=False)
    assert out.obs_names.equals(adata.obs_names)
    _assert_study_layout(out, adata)
    proteins = out.obsm["protein_expression"]
    assert list(proteins.columns) == _SU_PANEL[:33]
    np.testing.assert_array_equal(proteins, adata.obsm["pro_exp"].iloc[:, :33])
    for name, key in {"batch": "set", "donor": "subj_code", "condition": "Resp",
                      "cell_type": "final_clust_review"}.items():
        assert out.obs[name].tolist() == adata.obs[key].tolist()
    assert (out.obs["dataset"] == "query").all()
    assert set(adata.obs.columns) <= set(out.obs.columns)
    assert out.uns["doublets_removed"] == 0


def test_query_names_the_missing_doublet_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cite_seq, "find_spec",
                        lambda name: None if name == "skimage" else object())
    message = ("remove_doublets=True runs scanpy.pp.scrublet, whose automatic doublet "
               "threshold needs scikit-image, not installed. Install scikit-image or pass "
               "remove_doublets=False.")
    with pytest.raises(ModuleNotFoundError, match=f"^{re.escape(message)}$"):
        prepare_covid_query(_covid_like())


def test_query_drops_the_cells_scrublet_calls_doublets(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """The subsetting after Scrublet (Scrublet itself needs scikit-image, not installed
    here): the flagged cells go, RNA, proteins and obs stay aligned."""
    adata = _covid_like()
    flagged = np.zeros(adata.n_obs, dtype=bool)
    flagged[[0, 7, 50]] = True
    calls: list[tuple[str, int]] = []

    def fake_scrublet(data: ad.AnnData, batch_key: str, seed: int) -> np.ndarray:
        calls.append((batch_key, seed))
        return flagged

    monkeypatch.setattr(cite_seq, "scrublet_doublets", fake_scrublet)
    out = prepare_covid_query(adata, seed=3)
    assert calls == [("set", 3)]
    assert list(out.obs_names) == list(adata.obs_names[~flagged])
    np.testing.assert_array_equal(out.X.toarray(), adata.X[~flagged])
    np.testing.assert_array_equal(out.obsm["protein_expression"],
                                  adata.obsm["pro_exp"].iloc[~flagged, :33])
    assert out.obs["batch"].tolist() == adata.obs["set"][~flagged].tolist()
    assert out.uns["doublets_removed"] == 3


# ------------------------------------------------------------------ missing inputs


def _obs_error(key: str, role: str, adata: ad.AnnData) -> str:
    available = ", ".join(map(repr, list(adata.obs.columns)[:10]))
    return (f"{role} {key!r} is not a column of adata.obs (available: {available}). Add the "
            "column to adata.obs or pass the name of an existing one.")


@pytest.mark.parametrize(("prepare", "make", "role"), [
    (prepare_hao_reference, _hao_like, "batch_key"),
    (prepare_hao_reference, _hao_like, "label_key"),
    (prepare_hao_reference, _hao_like, "donor_key"),
    (prepare_covid_query, _covid_like, "condition_key"),
    (prepare_covid_query, _covid_like, "label_key"),
])
def test_a_missing_obs_column_is_named(prepare, make, role: str) -> None:  # type: ignore[no-untyped-def]
    adata = make()
    message = _obs_error("nope", role, adata)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prepare(adata, **{role: "nope"})


@pytest.mark.parametrize(("prepare", "make", "key"), [
    (prepare_hao_reference, _hao_like, "protein_counts"),
    (prepare_covid_query, _covid_like, "pro_exp"),
])
def test_a_missing_protein_key_is_named(prepare, make, key: str) -> None:  # type: ignore[no-untyped-def]
    adata = make()
    del adata.obsm[key]
    message = (f"adata.obsm has no {key!r} (obsm keys: []). Pass protein_key= naming the "
               "protein counts.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prepare(adata)


def test_proteins_must_be_a_named_table() -> None:
    adata = _covid_like()
    adata.obsm["pro_exp"] = adata.obsm["pro_exp"].to_numpy()
    message = ("adata.obsm['pro_exp'] is a ndarray, not a DataFrame, so its antibodies have no "
               "names. Store the counts as a pandas DataFrame whose columns are the antibody "
               "names.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prepare_covid_query(adata, remove_doublets=False)


def test_covid_query_doublets_are_removed_per_set() -> None:
    """Scrublet per `set` (the paper's query preprocessing) removes most injected doublets
    (sums of two cells of different types) and few singlets."""
    rng = np.random.default_rng(0)
    n_cells, n_genes = 600, 400
    programs = rng.gamma(1.0, 1.0, (4, n_genes))
    types = rng.integers(0, 4, n_cells)
    counts = rng.poisson(programs[types] * 2).astype(np.float32)
    pairs = rng.choice(n_cells, (40, 2))
    counts[:40] = counts[pairs[:, 0]] + counts[pairs[:, 1]]
    names = [f"c{i}" for i in range(n_cells)]
    obs = pd.DataFrame({"set": np.where(np.arange(n_cells) % 2 == 0, "set1", "set2"),
                        "subj_code": "s1", "Resp": "healthy",
                        "final_clust_review": types.astype(str)}, index=names)
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs,
                       var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
    adata.obsm["pro_exp"] = pd.DataFrame(rng.poisson(5, (n_cells, 3)).astype(float),
                                         index=obs.index, columns=["CD3", "CD19", "Isotype1"])
    query = prepare_covid_query(adata)
    removed = set(names) - set(query.obs_names)
    doublets = set(names[:40])
    assert len(removed & doublets) >= 24  # 31 of 40 with this seed
    assert len(removed - doublets) <= 0.05 * (n_cells - 40)
    assert list(query.obsm["protein_expression"].columns) == ["CD3", "CD19"]
