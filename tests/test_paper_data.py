"""The paper's real data sets (scprob.data.paper_data): the Cell Ranger v1 archive of the
68k PBMCs, the CellAssign runtime series, the CellAssign paper's marker CSVs and data sets,
and the wing-disc myoblasts (the AMP cells of the authors' metadata, skipped when
../shared/data is absent; the processed matrix on a small synthetic stand-in)."""

from __future__ import annotations

import io
import logging
import re
import tarfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.bench.covariates import prepare
from scprob.data.io import PROTEIN_KEY, read_10x_mtx_tar
from scprob.data.paper_data import (
    halved_sizes,
    pbmc_runtime_series,
    prepare_cellassign_data,
    prepare_wing_disc,
    read_marker_csv,
    runtime_markers,
    select_amp_cells,
)
from scprob.data.simulate.wing_disc import simulate_wing_disc

AMP_METADATA = Path("drosophila_wing_disc_amp") / "Everetts_Worley_et_al_Metadata.csv"


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _v1_archive(path: Path, genes: bytes = b"ENSG1\tCD3D\nENSG2\tMS4A1\nENSG3\tCD3D\n"
                ) -> Path:
    """A Cell Ranger 1.1 archive laid out as the 68k PBMCs' (3 genes × 2 barcodes)."""
    folder = "filtered_matrices_mex/hg19/"
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, folder + "matrix.mtx",
             b"%%MatrixMarket matrix coordinate integer general\n%\n3 2 4\n"
             b"1 1 5\n2 1 1\n2 2 3\n3 2 2\n")
        _add(archive, folder + "genes.tsv", genes)
        _add(archive, folder + "barcodes.tsv", b"AAACATACAACCAC-1\nAAACATTGAGCTAC-1\n")
        _add(archive, "filtered_matrices_mex/._genes.tsv", b"\x00junk")
    return path


# ------------------------------------------------------------------- 10x v1 archive


# The archive repeats a symbol on purpose; anndata warns before the reader renames it.
@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_v1_archive_reads_every_feature_as_a_gene(tmp_path: Path) -> None:
    adata = read_10x_mtx_tar(_v1_archive(tmp_path / "pbmc.tar.gz"))
    assert adata.shape == (2, 3)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), [[5, 1, 0], [0, 3, 2]])
    assert (adata.X != adata.layers["counts"]).nnz == 0
    assert list(adata.var_names) == ["CD3D", "MS4A1", "CD3D-1"]  # symbols made unique
    assert list(adata.var["gene_ids"]) == ["ENSG1", "ENSG2", "ENSG3"]
    assert list(adata.obs_names) == ["AAACATACAACCAC-1", "AAACATTGAGCTAC-1"]
    # The v1/v2 format cannot hold antibodies: no protein entry at all.
    assert PROTEIN_KEY not in adata.obsm


def test_v1_archive_errors_name_the_problem(tmp_path: Path) -> None:
    one_column = _v1_archive(tmp_path / "one.tar.gz", genes=b"CD3D\nMS4A1\nCD3E\n")
    with pytest.raises(ValueError, match=re.escape(
            "has 1 column; Cell Ranger v1/v2 write the gene id and the gene symbol")):
        read_10x_mtx_tar(one_column)
    both = tmp_path / "both.tar.gz"
    with tarfile.open(both, "w:gz") as archive:
        for name in ("matrix.mtx", "genes.tsv", "features.tsv", "barcodes.tsv"):
            _add(archive, f"m/{name}", b"x\n")
    with pytest.raises(ValueError, match=re.escape(
            "holds both features.tsv (Cell Ranger v3) and genes.tsv (v1/v2)")):
        read_10x_mtx_tar(both)
    incomplete = tmp_path / "incomplete.tar.gz"
    with tarfile.open(incomplete, "w:gz") as archive:
        _add(archive, "m/matrix.mtx", b"x\n")
        _add(archive, "m/barcodes.tsv", b"x\n")
    with pytest.raises(ValueError, match=re.escape(
            "lacks ['features.tsv']: expected a Cell Ranger matrix folder")):
        read_10x_mtx_tar(incomplete)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as archive:
        _add(archive, "m/matrix.mtx", b"")
        _add(archive, "m/genes.tsv", b"a\tb\n")
        _add(archive, "m/barcodes.tsv", b"c\n")
    with pytest.raises(ValueError, match=re.escape("'m/matrix.mtx' in ")):
        read_10x_mtx_tar(empty)


# ------------------------------------------------------------------- runtime series


def _pbmc_like() -> ad.AnnData:
    """8 cells × 5 genes; cell c2 and gene g3 have no count."""
    counts = np.array([[1, 0, 2, 0, 0], [0, 3, 0, 0, 1], [0, 0, 0, 0, 0], [4, 0, 0, 0, 0],
                       [1, 1, 1, 0, 1], [0, 0, 5, 0, 0], [2, 2, 0, 0, 0], [0, 1, 0, 0, 7]],
                      dtype=np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.obs_names = [f"c{i}" for i in range(8)]
    adata.var_names = [f"g{j}" for j in range(5)]
    adata.layers["counts"] = adata.X.copy()
    return adata


def test_runtime_series_takes_the_first_cells_after_filtering() -> None:
    series = pbmc_runtime_series(_pbmc_like(), [7, 3, 1])
    assert sorted(series) == [1, 3, 7]
    full = series[7]
    assert list(full.obs_names) == ["c0", "c1", "c3", "c4", "c5", "c6", "c7"]
    assert list(full.var_names) == ["g0", "g1", "g2", "g4"]
    assert full.obs["n_counts"].tolist() == [3, 4, 4, 4, 5, 4, 8]
    assert sp.isspmatrix_csr(full.X) and full.X.dtype == np.float32 and not full.layers
    # The first n cells, in file order (not a random subset), with their totals.
    assert list(series[3].obs_names) == ["c0", "c1", "c3"]
    assert series[3].obs["n_counts"].tolist() == [3, 4, 4]
    assert list(series[1].obs_names) == ["c0"] and series[1].n_vars == 4
    np.testing.assert_array_equal(series[3].X.toarray(), full.X[:3].toarray())


def test_runtime_sizes_halve_as_the_paper_did() -> None:
    assert halved_sizes(68_579) == [68_579, 34_289, 17_144, 8_572, 4_286, 2_143, 1_071]
    with pytest.raises(ValueError, match=re.escape(
            "sizes must be cell counts from 1 to the 7 cells left after filtering, got [8, 0]")):
        pbmc_runtime_series(_pbmc_like(), [8, 3, 0])
    adata = _pbmc_like()
    adata.layers["counts"][0, 0] = 0.5
    with pytest.raises(ValueError, match="must hold raw counts"):
        pbmc_runtime_series(adata, [1])


# ------------------------------------------------------------------- marker CSVs

FL_CSV = ("Gene,B cells,Cytotoxic T cells,CD4 T cells,Tfh,other\n"
          "CCL5,0,1,0,0,0\nCD19,1,0,0,0,0\nCD2,0,1,1,1,0\nTRAC,0,1,1,1,0\n")
HGSC_CSV = (",B cells,T cells,Epithelial cells\n"
            "CD79A,1,0,0\nCD3D,0,1,0\nEPCAM,0,0,1\nPTPRC,1,1,0\n")


def test_marker_csvs_of_both_shapes_read_as_binary_matrices(tmp_path: Path) -> None:
    (tmp_path / "FL_celltype.csv").write_text(FL_CSV)
    (tmp_path / "HGSC_celltype.csv").write_text(HGSC_CSV)
    fl = read_marker_csv(tmp_path / "FL_celltype.csv")
    assert list(fl.columns) == ["B cells", "Cytotoxic T cells", "CD4 T cells", "Tfh", "other"]
    assert list(fl.index) == ["CCL5", "CD19", "CD2", "TRAC"] and fl.index.name is None
    assert (fl.dtypes == np.int64).all() and fl.loc["CD2"].tolist() == [0, 1, 1, 1, 0]
    hgsc = read_marker_csv(tmp_path / "HGSC_celltype.csv")
    assert hgsc.shape == (4, 3) and hgsc.loc["PTPRC"].tolist() == [1, 1, 0]
    runtime = runtime_markers(fl)
    assert list(runtime.index) == ["CCL5", "CD19", "CD2"] and runtime.shape[1] == 5
    with pytest.raises(ValueError, match=re.escape(
            "the marker matrix has no 'TRAC' row; pass the follicular-lymphoma markers "
            "(FL_celltype.csv).")):
        runtime_markers(hgsc)


@pytest.mark.parametrize(("text", "message"), [
    (HGSC_CSV.replace("CD3D,0,1,0", "CD3D,0,2,0"),
     "must be a 0/1 marker matrix, but row 'CD3D', column 'T cells' holds '2'; write 1 where "
     "the gene marks the type and 0 elsewhere."),
    (HGSC_CSV.replace("EPCAM,0,0,1", "EPCAM,0,,1"),
     "must be a 0/1 marker matrix, but row 'EPCAM', column 'T cells' holds ''"),
    (HGSC_CSV + "CD3D,0,1,0\n",
     "lists the genes ['CD3D'] more than once; keep one row per gene."),
    ("Gene\n", "holds 0 genes × 0 types; pass a CSV with the genes in the first column"),
])
def test_marker_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "markers.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{str(path)!r} {message}")):
        read_marker_csv(path)


# ------------------------------------------------------------------- CellAssign data sets


def _sce_like() -> ad.AnnData:
    """The layout of sce_*_annotated_final.h5ad: counts in X, a repeated gene name, the
    published labels in obs["celltype"] and size factors in obs["size_factor"]."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, (6, 5)).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.obs_names = ["a", "b", "a", "c", "d", "e"]
    adata.var_names = ["CD19", "CD3D", "XIST", "CD3D", "MALAT1"]
    adata.obs["celltype"] = ["B cells", "T cells", "T cells", "B cells", "other", "T cells"]
    adata.obs["size_factor"] = np.linspace(0.5, 1.5, 6)
    return adata


def test_cellassign_data_keeps_truth_size_factors_and_measured_markers(
        caplog: pytest.LogCaptureFixture) -> None:
    source = _sce_like()
    markers = pd.DataFrame({"B cells": [1, 0, 0], "T cells": [0, 1, 1]},
                           index=["CD19", "CD3D", "CD8A"])
    with caplog.at_level(logging.WARNING, logger="scprob.data.paper_data"):
        adata = prepare_cellassign_data(source, markers)
    assert "1 of 3 markers are not measured and are left out: ['CD8A']" in caplog.text
    assert list(adata.var_names) == ["CD19", "CD3D"]  # marker order; the first CD3D column
    assert list(adata.obs_names) == ["a", "b", "a-1", "c", "d", "e"]
    np.testing.assert_array_equal(adata.X.toarray(), source.X[:, [0, 1]].toarray())
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    assert adata.obs["cell_type"].astype(str).tolist() == source.obs["celltype"].tolist()
    np.testing.assert_allclose(adata.obs["size_factor"], source.obs["size_factor"])
    assert list(source.var_names) == ["CD19", "CD3D", "XIST", "CD3D", "MALAT1"]  # untouched

    # Without published size factors: totals over ALL genes (before the marker cut).
    totals = np.asarray(source.X.sum(1)).ravel()
    derived = prepare_cellassign_data(source, markers, size_factor_key=None)
    np.testing.assert_allclose(derived.obs["size_factor"], totals / totals.mean())


def test_cellassign_data_errors_name_the_fix() -> None:
    source = _sce_like()
    markers = pd.DataFrame({"T cells": [1]}, index=["CD3D"])
    with pytest.raises(ValueError, match=re.escape(
            "truth_key 'cell_label' is not a column of adata.obs")):
        prepare_cellassign_data(source, markers, truth_key="cell_label")
    with pytest.raises(ValueError, match=re.escape("none of the 1 marker genes is measured")):
        prepare_cellassign_data(source, pd.DataFrame({"T": [1]}, index=["CD8A"]))
    source.obs.loc["b", "size_factor"] = 0.0
    with pytest.raises(ValueError, match=re.escape(
            "1 cells have a size factor that is not a positive number (first 'b')")):
        prepare_cellassign_data(source, markers)


# ------------------------------------------------------------------- wing disc


def test_amp_cells_of_the_real_metadata_count_and_name(shared_data: Path) -> None:
    cells = select_amp_cells(shared_data / AMP_METADATA)
    assert len(cells) == 19_885
    assert cells.index.is_unique
    assert cells["batch"].value_counts().to_dict() == {
        "96hr_2": 5869, "120hr_1": 5083, "96hr_1": 4923, "120hr_2": 4010}
    assert list(cells["batch"].cat.categories) == ["96hr_1", "96hr_2", "120hr_1", "120hr_2"]
    # Cell names are Barcode.Batch_ID with the authors' batch IDs (the file's Name column).
    assert cells.index[0] == f"{cells['barcode'].iloc[0]}.120H1"
    assert cells.index.str.fullmatch(r"[ACGT]+-1\.(96H[12]|120H[12])").all()


def test_amp_cells_of_the_real_metadata_carry_the_annotations(shared_data: Path) -> None:
    cells = select_amp_cells(shared_data / AMP_METADATA)
    assert cells["sex"].value_counts().to_dict() == {"FEMALE": 11_788, "MALE": 8_097}
    assert cells["timepoint"].value_counts().to_dict() == {"96H": 10_792, "120H": 9_093}
    assert sorted(cells["cluster"].cat.categories) == ["DIR_1", *(f"IND_{i}" for i in range(1, 10))]
    assert cells["domain"].value_counts().to_dict() == {"Indirect": 17_604, "Direct": 2_281}
    timepoint_of_batch = cells.groupby("batch", observed=True)["timepoint"].unique()
    assert {b: list(t) for b, t in timepoint_of_batch.items()} == {
        "96hr_1": ["96H"], "96hr_2": ["96H"], "120hr_1": ["120H"], "120hr_2": ["120H"]}


def test_amp_selection_errors(tmp_path: Path) -> None:
    path = tmp_path / "meta.csv"
    path.write_text("Name,Barcode,Batch_ID\nA-1.96H1,A-1,96H1\n")
    with pytest.raises(ValueError, match=re.escape(
            "lacks the columns ['Timepoint', 'Annotated_Clusters', 'Grouped_Domains', "
            "'Cell_Sex', 'Cell_Type']")):
        select_amp_cells(path)
    path.write_text("Barcode,Batch_ID,Timepoint,Annotated_Clusters,Grouped_Domains,Cell_Sex,"
                    "Cell_Type\nACGTAC-1,72H1,72H,IND_1,Indirect,MALE,AMP\n")
    with pytest.raises(ValueError, match=re.escape("AMP cells of unknown batches ['72H1']")):
        select_amp_cells(path)


def _myoblasts_like() -> tuple[ad.AnnData, pd.DataFrame]:
    """The layout of myoblasts.h5ad (raw counts in X, the paper's batch names, uns gene
    lists) on simulated counts, and the matching metadata rows of select_amp_cells."""
    sim = simulate_wing_disc(n_cells=120, n_genes=200, seed=1)
    names = {"96H1": "96hr_1", "96H2": "96hr_2", "120H1": "120hr_1", "120H2": "120hr_2"}
    rng = np.random.default_rng(1)
    barcodes = ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(sim.n_obs)]
    batch = sim.obs["batch"].astype(str).map(names).to_numpy()
    adata = ad.AnnData(sim.X.copy(), var=pd.DataFrame(index=sim.var_names.copy()))
    adata.obs_names = [f"{b}_{n}" for b, n in zip(batch, barcodes, strict=True)]
    adata.obs["batch"] = batch
    # The paper's file: 51 cell-cycle genes (one of the study's 52 not measured) and 4 sex.
    adata.uns["cell_cycle_genes"] = list(sim.uns["cell_cycle_genes"][1:])
    adata.uns["sex_genes"] = [*sim.uns["sex_genes"], "CG1000"]
    adata.var_names = [*adata.var_names[:-1], "CG1000"]
    metadata = pd.DataFrame({
        "barcode": barcodes, "batch": pd.Categorical(batch),
        "timepoint": pd.Categorical(sim.obs["timepoint"].astype(str)),
        "sex": pd.Categorical(sim.obs["sex"].astype(str)),
        "cluster": pd.Categorical(sim.obs["cell_state"].astype(str)),
        "domain": pd.Categorical(sim.obs["domain"].astype(str)),
    }, index=[f"{c}.x" for c in barcodes]).iloc[::-1]  # another order than the counts
    return adata, metadata


def test_wing_disc_gets_the_simulated_gene_lists_and_roles() -> None:
    source, metadata = _myoblasts_like()
    adata = prepare_wing_disc(source, metadata=metadata)
    assert len(adata.uns["nuisance_genes"]) == 55
    assert adata.uns["nuisance_genes"][:51] == source.uns["cell_cycle_genes"]
    assert adata.uns["nuisance_genes"][51:] == source.uns["sex_genes"]
    roles = adata.var["gene_role"].astype(str)
    assert (roles[adata.uns["nuisance_genes"]].value_counts().to_dict()
            == {"cell_cycle": 51, "sex": 4})
    assert roles[adata.uns["marker_genes"]].eq("marker").all()
    assert len(adata.uns["marker_genes"]) == 31


def test_wing_disc_gets_the_simulated_obs_and_counts() -> None:
    source, metadata = _myoblasts_like()
    adata = prepare_wing_disc(source, metadata=metadata)
    assert sp.isspmatrix_csr(adata.X)
    assert (adata.X != adata.layers["counts"]).nnz == 0
    assert list(adata.obs["batch"].cat.categories) == ["96hr_1", "96hr_2", "120hr_1",
                                                       "120hr_2"]
    # Matched to the metadata by barcode and batch, whatever the row order.
    by_barcode = metadata.set_index("barcode")
    barcodes = [n.split("_", 2)[-1] for n in adata.obs_names]
    expected = by_barcode.loc[barcodes, ["cluster", "sex"]].astype(str)
    assert adata.obs["cell_state"].astype(str).tolist() == expected["cluster"].tolist()
    assert adata.obs["sex"].astype(str).tolist() == expected["sex"].tolist()


def test_the_covariates_study_prepares_the_real_layout_unchanged() -> None:
    source, metadata = _myoblasts_like()
    adata = prepare_wing_disc(source, metadata=metadata)
    genes = prepare(adata)
    assert genes["gene_set"].value_counts().to_dict() == {"nuisance": 55, "marker": 31}
    assert len(adata.uns["nuisance_covariate_keys"]) == 55
    assert "log_normalized" in adata.layers

    # Without metadata: no annotation columns are made up.
    plain = prepare_wing_disc(source)
    assert list(plain.obs.columns) == ["batch"]


def test_wing_disc_errors_name_the_fix() -> None:
    source, metadata = _myoblasts_like()
    with pytest.raises(ValueError, match=re.escape(
            "not measured ['notagene']); fix uns['cell_cycle_genes'] / uns['sex_genes'] or pass "
            "nuisance_genes=.")):
        prepare_wing_disc(source, nuisance_genes=["notagene", "dnk"])
    del source.uns["sex_genes"]
    with pytest.raises(ValueError, match=re.escape("uns['sex_genes'] is missing")):
        prepare_wing_disc(source)
    source, metadata = _myoblasts_like()
    with pytest.raises(ValueError, match=re.escape(
            "2 of 120 cells have no row in the metadata")):
        prepare_wing_disc(source, metadata=metadata.iloc[2:])
