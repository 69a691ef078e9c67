"""The readers of the paper's real data (config/paper.yaml) through Snakemake, on tiny
synthetic stand-ins of every input in its published layout: the wing-disc myoblasts with
the authors' real metadata, the Heart Cell Atlas, the Hao et al. / Su et al. CITE-seq pair,
the Visium section with its hippocampus reference, and the CellAssign paper's data sets,
marker CSVs and the 10x 68k PBMC archive. The real files (GBs) are not shipped; this runs
every reader rule of config/paper.yaml on files of the same layout."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from scprob.data.paper_data import select_amp_cells
from scprob.data.simulate.heart_atlas import RANDOM_COVARIATES, simulate_heart_atlas
from scprob.data.simulate.wing_disc import simulate_wing_disc
from tests.conftest import REPO, SNAKEMAKE, run_snakemake

PAPER_CONFIG = REPO / "config" / "paper.yaml"
AMP_METADATA = Path("drosophila_wing_disc_amp") / "Everetts_Worley_et_al_Metadata.csv"
SCALING_SIZES = [200, 300]
RUNTIME_SIZES = [100, 200]
# The Visium crop of config/paper.yaml (strict bounds).
CROP_ROWS, CROP_COLS = (15, 32), (20, 80)


def _nb_counts(rng: np.random.Generator, groups: np.ndarray, n_genes: int,
               scale: float = 2.0) -> np.ndarray:
    """NB counts ``(n_cells, n_genes)`` whose means follow each cell's group."""
    programs = rng.gamma(0.8, scale, (int(groups.max()) + 1, n_genes))
    means = programs[groups]
    return rng.negative_binomial(3, 3 / (3 + means)).astype(np.float32)


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------ wing disc (Fig. 2)


def write_paper_wing_disc(folder: Path, metadata_csv: Path, marker_genes: list[str],
                          n_per_batch: int = 50, seed: int = 0) -> pd.DataFrame:
    """``myoblasts.h5ad`` (AMP cells of the real metadata, named ``<barcode>-<batch>``, the
    paper's batch names, 51 cell-cycle and 4 sex genes in uns, the markers among ~300
    genes) beside a copy of the authors' metadata CSV; returns the chosen metadata rows."""
    folder.mkdir(parents=True)
    shutil.copyfile(metadata_csv, folder / "Everetts_Worley_et_al_Metadata.csv")
    amp = select_amp_cells(metadata_csv)
    chosen = amp.groupby("batch", observed=True).sample(n_per_batch, random_state=seed)
    simulated = simulate_wing_disc(n_cells=20, n_genes=300, seed=seed)
    cell_cycle = [str(g) for g in simulated.uns["cell_cycle_genes"]][:51]
    sex = ["lncRNA:roX1", "lncRNA:roX2", "msl-2", "Yp1"]
    named = list(dict.fromkeys([*marker_genes, *cell_cycle, *sex]))
    genes = [*named, *(f"CG{10000 + j}" for j in range(300 - len(named)))]
    rng = np.random.default_rng(seed)
    clusters = pd.factorize(chosen["cluster"].astype(str))[0]
    counts = _nb_counts(rng, clusters, len(genes))
    obs = pd.DataFrame({"batch": chosen["batch"].astype(str).to_numpy(),
                        "n_counts": counts.sum(axis=1)},
                       index=[f"{b}-{batch}" for b, batch in
                              zip(chosen["barcode"], chosen["batch"].astype(str), strict=True)])
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.uns["cell_cycle_genes"] = cell_cycle
    adata.uns["sex_genes"] = sex
    adata.write_h5ad(folder / "myoblasts.h5ad")
    return chosen


# ------------------------------------------------------------- Heart Cell Atlas (Supp. 2)


def write_paper_heart(folder: Path, n_cells: int = 400, seed: int = 0) -> ad.AnnData:
    """``global_raw.h5ad``: CSR raw counts, obs cell_source, donor, percent_mito and
    percent_ribo, without the 8 noise covariates (the workflow adds them).

    The simulated atlas's counts plus Poisson background (percentages recomputed): at a
    few hundred cells its ~120 counts a cell leave so many genes with one count in a cell
    source that seurat_v3's per-source loess fit is singular (scanpy's limitation on tiny
    batches, not the atlas's: its smallest source has ~39,000 cells)."""
    folder.mkdir(parents=True)
    atlas = simulate_heart_atlas(n_cells, n_genes=300, seed=seed)
    rng = np.random.default_rng(seed)
    counts = atlas.X.toarray() + rng.poisson(rng.gamma(0.7, 1.5, atlas.n_vars), atlas.shape)
    atlas.X = sp.csr_matrix(counts.astype(np.float32))
    totals = counts.sum(axis=1)
    for key, genes in (("percent_mito", "mt"), ("percent_ribo", "ribo")):
        atlas.obs[key] = 100 * counts[:, atlas.var[genes].to_numpy()].sum(axis=1) / totals
    atlas.obs = atlas.obs.drop(columns=list(RANDOM_COVARIATES))
    atlas.write_h5ad(folder / "global_raw.h5ad")
    return atlas


# ------------------------------------------------------------- CITE-seq pair (Fig. 3)

HAO_BATCHES = [f"P{d}_{t}" for d in range(1, 5) for t in (0, 3)]  # 8 donor × day batches
# Two clones of CD4 (summed), Notch/TCR pairs (not clones), two IgG controls (dropped).
HAO_PANEL = ["CD4-1", "CD4-2", "Notch-1", "Notch-2", "TCR-1", "TCR-2", "HLA-DR",
             "Rat-IgG1", "Mouse-IgG2a", *(f"P{i}" for i in range(160))]
SU_PANEL = [*(f"CD{i}" for i in range(1, 34)), "Isotype1", "Isotype2", "Isotype3",
            "Isotype4", "Anti-A", "Anti-B"]
CITE_GENES = ["MT-CO1", "MT-ND1", "MT-ATP6", *(f"GENE{j}" for j in range(297))]


def write_paper_cite_seq(folder: Path, n_reference: int = 320, n_query: int = 240,
                         seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    """``pbmc_seurat_v4.h5ad`` (raw counts in X, obs orig.ident / donor / celltype.l2,
    obsm protein_counts a DataFrame; one Doublet and one high-MT cell that the filters
    drop) and ``covid_cite.h5ad`` (obs set / subj_code / Resp / final_clust_review, 39
    antibodies in obsm pro_exp; genes partly shared with the reference)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    types = np.array(["CD4 TCM", "CD14 Mono", "NK", "B naive", "MAIT", "CD4 CTL"])
    groups = rng.integers(0, len(types), n_reference)
    x = _nb_counts(rng, groups, len(CITE_GENES))
    x[:, :3] = rng.poisson(0.2, (n_reference, 3))  # few MT- counts
    labels = types[groups].astype(object)
    labels[0] = "Doublet"
    x[1, :3] = 400  # far above 12 % of its counts in MT- genes
    proteins = rng.poisson(20, (n_reference, len(HAO_PANEL))).astype(np.float64)
    proteins[proteins == 0] = 1
    batches = [HAO_BATCHES[i % len(HAO_BATCHES)] for i in range(n_reference)]
    names = [f"L1_{''.join(rng.choice(list('ACGT'), 16))}" for _ in range(n_reference)]
    obs = pd.DataFrame({"orig.ident": pd.Categorical(batches),
                        "donor": [b.split("_")[0] for b in batches],
                        "time": [b.split("_")[1] for b in batches],
                        "celltype.l1": "x", "celltype.l2": labels,
                        "nCount_ADT": proteins.sum(axis=1)}, index=names)
    reference = ad.AnnData(sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=CITE_GENES))
    reference.obsm["protein_counts"] = pd.DataFrame(proteins, index=names, columns=HAO_PANEL)
    reference.write_h5ad(folder / "pbmc_seurat_v4.h5ad")

    query_genes = [*CITE_GENES[20:], *(f"QGENE{j}" for j in range(20))]
    query_groups = rng.integers(0, 4, n_query)
    qnames = [f"q{i}" for i in range(n_query)]
    qobs = pd.DataFrame({
        "set": [f"set{i % 2 + 1}" for i in range(n_query)],
        "subj_code": [f"subj{i % 4}" for i in range(n_query)],
        "Resp": [("Healthy", "Moderate", "Severe")[i % 3] for i in range(n_query)],
        "final_clust_review": np.array(["CD4 T", "Monocyte", "B", "NK"])[query_groups],
    }, index=qnames)
    query = ad.AnnData(sp.csr_matrix(_nb_counts(rng, query_groups, len(query_genes))),
                       obs=qobs, var=pd.DataFrame(index=query_genes))
    query.obsm["pro_exp"] = pd.DataFrame(rng.poisson(5, (n_query, len(SU_PANEL))),
                                         index=qnames, columns=SU_PANEL)
    query.write_h5ad(folder / "covid_cite.h5ad")
    return reference, query


# ----------------------------------------------------------------- Visium (Fig. 5)


def _positions(n_rows: int = 22, first_row: int = 13) -> pd.DataFrame:
    """A Visium-like hexagonal grid: columns step 8, odd rows shifted by 4, so rows 15 and
    32 and columns 20 and 80 (the crop's excluded bounds) all occur."""
    rows = []
    for r in range(first_row, first_row + n_rows):
        for c in range(20 + 4 * (r % 2), 90, 8):
            rows.append((r, c))
    table = pd.DataFrame(rows, columns=["array_row", "array_col"])
    table.index = [f"{''.join(np.random.default_rng(i).choice(list('ACGT'), 16))}-1"
                   for i in range(len(table))]
    return table


def write_paper_visium(folder: Path, seed: int = 0) -> pd.DataFrame:
    """``V1_Adult_Mouse_Brain_filtered_feature_bc_matrix.h5`` (in-tissue barcodes only,
    features × barcodes CSC as Space Ranger stores them), ``..._spatial.tar.gz`` (Space
    Ranger 1.x ``spatial/tissue_positions_list.csv``, no header, every grid spot) and
    ``scRefSubsampled1000_hippocampus_compressed.h5ad`` (labels in liger_ident_coarse);
    returns the in-tissue spots' positions in matrix order."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    grid = _positions()
    in_tissue = rng.random(len(grid)) < 0.9
    spots = grid[in_tissue]
    genes = [f"Gene{j}" for j in range(300)]
    counts = _nb_counts(rng, rng.integers(0, 4, len(spots)), len(genes))
    by_barcode = sp.csc_matrix(counts.T.astype(np.int32))
    with h5py.File(folder / "V1_Adult_Mouse_Brain_filtered_feature_bc_matrix.h5", "w") as h5:
        matrix = h5.create_group("matrix")
        matrix["data"] = by_barcode.data
        matrix["indices"] = by_barcode.indices.astype(np.int64)
        matrix["indptr"] = by_barcode.indptr.astype(np.int64)
        matrix["shape"] = np.array(by_barcode.shape, dtype=np.int32)
        matrix["barcodes"] = np.array([b.encode() for b in spots.index], dtype="S")
        features = matrix.create_group("features")
        features["id"] = np.array([f"ENSMUSG{j:011d}".encode() for j in range(len(genes))])
        features["name"] = np.array([g.encode() for g in genes])
        features["feature_type"] = np.array([b"Gene Expression"] * len(genes))
        features["genome"] = np.array([b"mm10"] * len(genes))
    lines = [f"{barcode},{int(tissue)},{r},{c},{100 * r},{50 * c}"
             for (barcode, (r, c)), tissue in zip(grid.iterrows(), in_tissue, strict=True)]
    with tarfile.open(folder / "V1_Adult_Mouse_Brain_spatial.tar.gz", "w:gz") as archive:
        _add_member(archive, "spatial/tissue_positions_list.csv",
                    ("\n".join(lines) + "\n").encode())
        _add_member(archive, "spatial/scalefactors_json.json", b"{}")

    n_cells = 300
    cell_types = np.array(["Denate", "CA1", "CA3", "Oligodendrocyte", "Astrocyte"])
    groups = rng.integers(0, len(cell_types), n_cells)
    ref_genes = [*genes[50:], *(f"RefGene{j}" for j in range(50))]
    reference = ad.AnnData(
        sp.csr_matrix(_nb_counts(rng, groups, len(ref_genes))),
        obs=pd.DataFrame({"liger_ident_coarse": pd.Categorical(cell_types[groups])},
                         index=[f"cell{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=ref_genes))
    reference.write_h5ad(folder / "scRefSubsampled1000_hippocampus_compressed.h5ad")
    return spots


# ----------------------------------------------------------- CellAssign (Supp. Fig. 6)

FL_TYPES = ["B cells", "Cytotoxic T cells", "T follicular helper cells", "CD4 T cells",
            "other"]
FL_MARKERS = ["TRAC", "CD19", "MS4A1", "CD79A", "CD79B", "CD3D", "CD3E", "CD2", "CD8A",
              "CD8B", "GZMA", "GZMB", "NKG7", "CD4", "IL7R", "CXCR5", "PDCD1", "ICOS",
              "CD74", "HLA-DRA", "LYZ", "S100A8", "FCGR3A", "CST3"]  # 24, as FL_celltype.csv
HGSC_TYPES = ["Epithelial cells", "Monocyte/Macrophage", "Vascular smooth muscle cells",
              "Endothelial cells"]
HGSC_MARKERS = ["EPCAM", "KRT8", "KRT18", "PAX8", "CD14", "CD68", "ACTA2", "MYH11",
                "PECAM1", "VWF", "NOT_MEASURED"]


def _marker_table(genes: list[str], types: list[str], rng: np.random.Generator
                  ) -> pd.DataFrame:
    table = pd.DataFrame(0, index=genes, columns=types)
    for i, gene in enumerate(genes):
        table.loc[gene, types[i % len(types)]] = 1
        if rng.random() < 0.2:
            table.loc[gene, types[(i + 1) % len(types)]] = 1
    return table


def _sce(genes: list[str], types: list[str], n_cells: int, rng: np.random.Generator
         ) -> ad.AnnData:
    groups = rng.integers(0, len(types), n_cells)
    counts = _nb_counts(rng, groups, len(genes))
    totals = counts.sum(axis=1)
    obs = pd.DataFrame({"celltype": np.array(types)[groups],
                        "size_factor": totals / totals.mean(), "patient": "P1"},
                       index=[f"{i}-1" for i in range(n_cells)])
    return ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))


def write_paper_cellassign(folder: Path, n_pbmc: int = 250, seed: int = 0
                           ) -> dict[str, Any]:
    """The CellAssign paper's files: ``sce_follicular_annotated_final.h5ad`` (log counts
    in X, raw counts in layers["counts"], as converted from R), ``sce_hgsc_annotated_final
    .h5ad`` (raw counts in X, a repeated cell name), ``FL_celltype.csv`` (index column
    "Gene", 24 × 5 with TRAC), ``HGSC_celltype.csv`` (unnamed index column, one marker not
    measured) and the 10x 68k PBMCs' Cell Ranger 1.1 archive (one empty barcode and one
    empty gene)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    fl_markers = _marker_table(FL_MARKERS, FL_TYPES, rng)
    fl_markers.rename_axis("Gene").to_csv(folder / "FL_celltype.csv")
    hgsc_markers = _marker_table(HGSC_MARKERS, HGSC_TYPES, rng)
    hgsc_markers.to_csv(folder / "HGSC_celltype.csv")

    background = [f"BG{j}" for j in range(150)]
    follicular = _sce([*FL_MARKERS, *background], FL_TYPES, 300, rng)
    follicular.layers["counts"] = follicular.X.copy()
    follicular.X = sp.csr_matrix(np.log1p(follicular.X.toarray()) + 0.5)
    follicular.write_h5ad(folder / "sce_follicular_annotated_final.h5ad")
    hgsc = _sce([*HGSC_MARKERS[:-1], *background], HGSC_TYPES, 250, rng)
    hgsc.obs_names = [*hgsc.obs_names[:-1], hgsc.obs_names[0]]  # a repeated cell name
    hgsc.write_h5ad(folder / "sce_hgsc_annotated_final.h5ad")

    pbmc_genes = [*FL_MARKERS[1:], *background]  # TRAC not measured, as the panel did
    counts = _nb_counts(rng, rng.integers(0, 5, n_pbmc), len(pbmc_genes), scale=0.8)
    counts[7] = 0  # a barcode without counts
    counts[:, 3] = 0  # a gene without counts
    barcodes = [f"{''.join(rng.choice(list('ACGT'), 14))}-1" for _ in range(n_pbmc)]
    coo = sp.coo_matrix(counts.T)  # MatrixMarket: genes × barcodes
    mtx = io.BytesIO()
    mtx.write(b"%%MatrixMarket matrix coordinate integer general\n%\n")
    mtx.write(f"{coo.shape[0]} {coo.shape[1]} {coo.nnz}\n".encode())
    for i, j, v in zip(coo.row, coo.col, coo.data, strict=True):
        mtx.write(f"{i + 1} {j + 1} {int(v)}\n".encode())
    genes_tsv = "".join(f"ENSG{j:011d}\t{g}\n" for j, g in enumerate(pbmc_genes))
    inside = "filtered_matrices_mex/hg19/"
    with tarfile.open(folder / "fresh_68k_pbmc_donor_a_filtered_gene_bc_matrices.tar.gz",
                      "w:gz") as archive:
        _add_member(archive, inside + "matrix.mtx", mtx.getvalue())
        _add_member(archive, inside + "genes.tsv", genes_tsv.encode())
        _add_member(archive, inside + "barcodes.tsv", ("\n".join(barcodes) + "\n").encode())
    return {"fl_markers": fl_markers, "hgsc_markers": hgsc_markers, "follicular": follicular,
            "hgsc": hgsc, "pbmc_counts": counts, "pbmc_barcodes": barcodes,
            "pbmc_genes": pbmc_genes}


# ------------------------------------------------------------------ the config and run


def paper_config_on(folders: dict[str, Path]) -> dict[str, Any]:
    """config/paper.yaml with each study's real-data folder at ``folders`` (absolute),
    no downloads, the reader studies only and sizes that fit the stand-ins."""
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    config["studies"] = ["covariates", "scaling", "scarches", "deconvolution", "cellassign"]
    config["download"]["sources_tsv"] = None
    config["covariates"]["real"]["folder"] = str(folders["wing_disc"])
    scaling = config["scaling"]
    scaling["real"]["folder"] = str(folders["heart"])
    scaling.update(n_cells=SCALING_SIZES, n_top_genes=100, n_pcs=10, warmup_cells=50,
                   plateau_cells=min(SCALING_SIZES))
    config["scarches"]["real"].update(folder=str(folders["cite_seq"]), n_top_genes=100)
    real = config["deconvolution"]["real"]
    real["folder"] = str(folders["visium"])
    real["visium"]["n_top_genes"] = 100
    cellassign = config["cellassign"]
    cellassign["paper_data"]["folder"] = str(folders["cellassign"])
    cellassign["runtime_sizes"] = RUNTIME_SIZES
    cellassign["ablation"]["sizes"] = RUNTIME_SIZES
    cellassign["real"] = None
    return config


READER_OUTPUTS = [
    "results/covariates/data/wing_disc_counts.h5ad",
    *(f"results/scaling/data/heart_{n}.h5ad" for n in SCALING_SIZES),
    "results/scarches/data/reference.h5ad",
    "results/scarches/data/query.h5ad",
    "results/deconvolution/data/real/reference.h5ad",
    "results/deconvolution/data/real/spots.h5ad",
    "results/cellassign/data/follicular.h5ad",
    "results/cellassign/data/hgsc.h5ad",
    *(f"results/cellassign/data/pbmc_{n}.h5ad" for n in RUNTIME_SIZES),
    *(f"results/cellassign/markers/{name}.csv" for name in ("follicular", "hgsc", "pbmc")),
]


@pytest.mark.workflow
def test_paper_config_readers_run_on_stand_ins_of_every_published_file(
        shared_data: Path, tmp_path: Path) -> None:
    if not SNAKEMAKE.exists():
        pytest.skip(f"no snakemake at {SNAKEMAKE}")
    paper = yaml.safe_load(PAPER_CONFIG.read_text())
    marker_genes = list(paper["covariates"]["real"]["marker_genes"])
    data = tmp_path / "paper"
    folders = {name: data / name
               for name in ("wing_disc", "heart", "cite_seq", "visium", "cellassign")}
    amp_cells = write_paper_wing_disc(folders["wing_disc"], shared_data / AMP_METADATA,
                                      marker_genes)
    atlas = write_paper_heart(folders["heart"])
    hao, _ = write_paper_cite_seq(folders["cite_seq"])
    spots_written = write_paper_visium(folders["visium"])
    cellassign = write_paper_cellassign(folders["cellassign"])
    configfile = tmp_path / "paper.yaml"
    configfile.write_text(yaml.safe_dump(paper_config_on(folders)))
    workdir = tmp_path / "run"
    workdir.mkdir()

    run = run_snakemake(workdir, *READER_OUTPUTS, configfiles=[configfile])
    assert run.returncode == 0, run.stdout[-8000:]
    missing = [path for path in READER_OUTPUTS if not (workdir / path).is_file()]
    assert missing == []
    assert not (workdir / "resources").exists()  # nothing downloaded
    results = workdir / "results"

    # Wing disc: the authors' annotations joined by barcode and batch, the uns gene lists.
    wing = ad.read_h5ad(results / "covariates/data/wing_disc_counts.h5ad")
    assert wing.n_obs == len(amp_cells) == 200
    assert list(wing.obs["batch"].cat.categories) == ["96hr_1", "96hr_2", "120hr_1",
                                                      "120hr_2"]
    assert wing.obs["batch"].value_counts().to_dict() == dict.fromkeys(
        ["96hr_1", "96hr_2", "120hr_1", "120hr_2"], 50)
    assert wing.obs["cell_state"].astype(str).tolist() == amp_cells["cluster"].astype(
        str).tolist()
    assert wing.obs["sex"].astype(str).tolist() == amp_cells["sex"].astype(str).tolist()
    assert set(wing.obs["sex"]) <= {"FEMALE", "MALE"}
    assert list(wing.uns["marker_genes"]) == marker_genes
    assert len(wing.uns["nuisance_genes"]) == 55
    assert (wing.var.loc[marker_genes, "gene_role"] == "marker").all()
    assert sp.issparse(wing.X) and (wing.X != wing.layers["counts"]).nnz == 0

    # Heart subsamples: the measured covariates kept, the 8 noise covariates added.
    for n_cells in SCALING_SIZES:
        heart = ad.read_h5ad(results / f"scaling/data/heart_{n_cells}.h5ad")
        assert heart.shape == (n_cells, 100)
        for key in ["cell_source", "donor", "percent_mito", "percent_ribo",
                    *(f"cont_cov_{i}" for i in range(1, 9))]:
            assert key in heart.obs, key
        assert heart.obs_names.isin(atlas.obs_names).all()
        np.testing.assert_allclose(heart.obs["percent_mito"],
                                   atlas.obs.loc[heart.obs_names, "percent_mito"])
        assert heart.uns["hvg"]["batch_key"] == "cell_source"

    # scArches: filtered, clone-summed, controls dropped, 5 batches' proteins masked.
    reference = ad.read_h5ad(results / "scarches/data/reference.h5ad")
    query = ad.read_h5ad(results / "scarches/data/query.h5ad")
    for key in ("batch", "cell_type", "dataset"):
        assert key in reference.obs, key
    assert (reference.obs["dataset"] == "reference").all()
    assert (query.obs["dataset"] == "query").all()
    assert reference.n_obs == hao.n_obs - 2  # the Doublet and the high-MT cell
    assert reference.n_vars == 100 and set(query.var_names) <= set(reference.var_names)
    proteins = reference.obsm["protein_expression"]
    assert "CD4" in proteins.columns and "CD4-1" not in proteins.columns
    assert {"Notch-1", "Notch-2", "TCR-1", "TCR-2"} <= set(proteins.columns)
    assert not any("IgG" in c for c in proteins.columns)
    masked = list(reference.uns["masked_batches"])
    assert len(masked) == paper["scarches"]["real"]["n_masked_batches"] == 5
    in_masked = reference.obs["batch"].isin(masked).to_numpy()
    assert in_masked.any() and (proteins.to_numpy()[in_masked] == 0).all()
    assert (proteins.to_numpy()[~in_masked].sum(axis=1) > 0).all()
    assert list(query.obsm["protein_expression"].columns) == SU_PANEL[:33]
    assert {"batch", "donor", "condition", "cell_type"} <= set(query.obs.columns)

    # Visium: only the spots strictly inside the crop; the reference's labels and genes.
    spots = ad.read_h5ad(results / "deconvolution/data/real/spots.h5ad")
    inside = spots_written[(spots_written["array_row"] > CROP_ROWS[0])
                           & (spots_written["array_row"] < CROP_ROWS[1])
                           & (spots_written["array_col"] > CROP_COLS[0])
                           & (spots_written["array_col"] < CROP_COLS[1])]
    assert 0 < len(inside) < len(spots_written)
    assert list(spots.obs_names) == list(inside.index)
    assert spots.obsm["spatial"].shape == (len(inside), 2)
    deconvolution_reference = ad.read_h5ad(results / "deconvolution/data/real/reference.h5ad")
    assert set(deconvolution_reference.obs["cell_type"]) == {
        "Denate", "CA1", "CA3", "Oligodendrocyte", "Astrocyte"}
    assert 0 < deconvolution_reference.n_vars <= 100
    assert set(deconvolution_reference.var_names) <= set(spots.var_names)

    # CellAssign: the published labels and size factors, the measured markers only.
    follicular = ad.read_h5ad(results / "cellassign/data/follicular.h5ad")
    source = cellassign["follicular"]
    assert follicular.n_obs == source.n_obs and list(follicular.var_names) == FL_MARKERS
    assert follicular.obs["cell_type"].astype(str).tolist() == source.obs["celltype"].tolist()
    np.testing.assert_allclose(follicular.obs["size_factor"], source.obs["size_factor"])
    np.testing.assert_array_equal(follicular.X.toarray(),
                                  source.layers["counts"][:, :len(FL_MARKERS)].toarray())
    hgsc = ad.read_h5ad(results / "cellassign/data/hgsc.h5ad")
    assert list(hgsc.var_names) == HGSC_MARKERS[:-1] and hgsc.obs_names.is_unique
    assert "cell_type" in hgsc.obs and "size_factor" in hgsc.obs
    hgsc_markers = pd.read_csv(results / "cellassign/markers/hgsc.csv", index_col="gene")
    pd.testing.assert_frame_equal(hgsc_markers, cellassign["hgsc_markers"].iloc[:-1],
                                  check_names=False)
    fl_markers = pd.read_csv(results / "cellassign/markers/follicular.csv", index_col="gene")
    assert list(fl_markers.index) == FL_MARKERS and list(fl_markers.columns) == FL_TYPES

    # The PBMC runtime series: the first n non-empty barcodes, the FL markers without TRAC.
    counts = cellassign["pbmc_counts"]
    non_empty = [b for b, total in zip(cellassign["pbmc_barcodes"], counts.sum(axis=1),
                                       strict=True) if total > 0]
    for n_cells in RUNTIME_SIZES:
        pbmc = ad.read_h5ad(results / f"cellassign/data/pbmc_{n_cells}.h5ad")
        assert list(pbmc.obs_names) == non_empty[:n_cells]
        assert pbmc.n_vars == len(cellassign["pbmc_genes"]) - 1  # the empty gene dropped
        assert "n_counts" in pbmc.obs
    pbmc_markers = pd.read_csv(results / "cellassign/markers/pbmc.csv", index_col="gene")
    assert pbmc_markers.shape == (23, 5)
    assert list(pbmc_markers.index) == FL_MARKERS[1:]
