"""The paper's own real data sets, in the layouts the workflow's studies read.

CellAssign (paper Supp. Fig. 6), from the files of the paper's notebooks
(YosefLab/scvi-tools-reproducibility, ``docs/cell_assign_*.ipynb``):

* ``pbmc_runtime_series(adata, sizes)``: the runtime panel (Supp. Fig. 6g) from the 10x
  68k PBMCs (``scprob.data.io.read_10x_mtx_tar`` reads the Cell Ranger 1.1 archive): the
  FIRST n cells at each size, as the paper halved 68,579 down to 1,071;
  ``halved_sizes(n)`` gives those sizes.
* ``read_marker_csv(path)``: the CellAssign paper's binary marker matrices as shipped on
  figshare (``FL_celltype.csv``, ``HGSC_celltype.csv``); ``runtime_markers`` drops TRAC
  from the follicular one (23 × 5), as the runtime panel did.
* ``prepare_cellassign_data(adata, markers)``: ``sce_follicular_annotated_final.h5ad`` /
  ``sce_hgsc_annotated_final.h5ad`` as the CellAssign rules read a data set: raw counts in
  ``X``, the truth in ``obs["cell_type"]``, the published size factors in
  ``obs["size_factor"]``, the measured marker genes only.

Wing-disc myoblasts (paper Fig. 2), as the covariates study reads the simulated atlas
(``scprob.data.simulate.wing_disc``):

* ``select_amp_cells(metadata_csv)``: the 19,885 adult muscle precursor (AMP) cells of the
  authors' per-cell metadata (Everetts, Worley et al. 2021), named ``Barcode.Batch_ID``,
  with the paper's batch names and the authors' time point, sex, cluster and domain.
* ``prepare_wing_disc(adata)``: the paper's processed matrix ``myoblasts.h5ad`` (19,885
  cells × 3,387 genes) in the simulator's layout: counts in ``X`` and
  ``layers["counts"]``, ``obs["batch"]``, ``var["gene_role"]``, and the marker / nuisance
  gene lists in ``uns`` (nuisance: the file's 51 cell-cycle and 4 sex genes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprob.data.fields import first_bad_entry, require_obs_column
from scprob.data.simulate.wing_disc import MARKER_GENES

log = logging.getLogger(__name__)

# The runtime panel's smallest size: the paper halved its cells while more than 1,000 remained.
RUNTIME_MIN_CELLS = 1000
# The follicular marker that the runtime panel left out (23 of FL_celltype.csv's 24 genes).
RUNTIME_DROPPED_MARKER = "TRAC"

# The authors' Batch_ID → the batch names of the paper's myoblasts.h5ad, in time order.
WING_DISC_BATCHES: dict[str, str] = {
    "96H1": "96hr_1", "96H2": "96hr_2", "120H1": "120hr_1", "120H2": "120hr_2",
}
_METADATA_COLUMNS = ("Barcode", "Batch_ID", "Timepoint", "Annotated_Clusters",
                     "Grouped_Domains", "Cell_Sex", "Cell_Type")
# var["gene_role"] as the simulator writes it; "nuisance" only for genes passed by the
# caller that neither uns gene list names.
GENE_ROLES = ("marker", "cell_cycle", "sex", "nuisance", "background")
# A 10x cell barcode (e.g. AAACCTGAGAAGGCCT-1) inside a cell name.
_BARCODE = re.compile(r"[ACGTN]{6,}-\d+")


def _counts_csr(adata: ad.AnnData, what: str) -> sp.csr_matrix:
    """The raw counts ``(n_cells, n_genes)`` as CSR float32: ``layers["counts"]`` when
    present (h5ad files converted from R keep the normalised values in ``X``), else ``X``;
    raise unless every entry is a non-negative integer."""
    source = "layers['counts']" if "counts" in adata.layers else "X"
    counts = sp.csr_matrix(adata.layers["counts"] if source != "X" else adata.X,
                           dtype=np.float32)
    bad = first_bad_entry(counts.data)
    if bad is not None:
        raise ValueError(
            f"{what}: {source} must hold raw counts (non-negative integers), but holds "
            f"{counts.data[bad]!r}; pass the file with its raw counts in X or "
            "layers['counts'].")
    return counts


# ----------------------------------------------------------------- CellAssign runtime


def halved_sizes(n_cells: int, minimum: int = RUNTIME_MIN_CELLS) -> list[int]:
    """``n_cells`` halved (floor) while above ``minimum``: the paper's runtime sizes
    (68,579 → 34,289, 17,144, 8,572, 4,286, 2,143, 1,071), largest first."""
    if n_cells < 1 or minimum < 0:
        raise ValueError(f"n_cells must be positive and minimum non-negative, got "
                         f"{n_cells} and {minimum}.")
    sizes = []
    while n_cells > minimum:
        sizes.append(n_cells)
        n_cells //= 2
    return sizes


def _check_sizes(sizes: Iterable[int], n_cells: int) -> list[int]:
    sizes = list(sizes)
    bad = [n for n in sizes
           if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= n_cells]
    if not sizes or bad:
        raise ValueError(f"sizes must be cell counts from 1 to the {n_cells} cells left after "
                         f"filtering, got {bad or 'none'}; pass sizes within that range.")
    return [int(n) for n in sizes]


def pbmc_runtime_series(adata: ad.AnnData, sizes: Iterable[int]) -> dict[int, ad.AnnData]:
    """The runtime panel's data sets (paper Supp. Fig. 6g), keyed by size.

    Cells and genes with no count are dropped (68,579 cells remain of the 10x 68k PBMCs),
    ``obs["n_counts"]`` is each cell's total over all genes (the size factor the paper
    gave CellAssign), and the data set of size n is the FIRST n cells in file order, not a
    random subset, as the paper sliced ``adata[:n]``. Each value holds the raw counts
    ``(n, n_genes)`` as CSR float32 in ``X`` only (CellAssign reads ``X``; a second copy
    in ``layers`` would double the files).
    """
    counts = _counts_csr(adata, "the PBMC counts")
    cell_totals = np.asarray(counts.sum(axis=1)).ravel()
    gene_totals = np.asarray(counts.sum(axis=0)).ravel()
    cells, genes = np.flatnonzero(cell_totals > 0), np.flatnonzero(gene_totals > 0)
    log.info("%d of %d cells and %d of %d genes have at least one count", cells.size,
             adata.n_obs, genes.size, adata.n_vars)
    filtered = ad.AnnData(counts[cells][:, genes], obs=adata.obs.iloc[cells].copy(),
                          var=adata.var.iloc[genes].copy())
    filtered.obs["n_counts"] = cell_totals[cells]
    return {n: filtered[:n].copy() for n in _check_sizes(sizes, filtered.n_obs)}


# ----------------------------------------------------------------- CellAssign markers


def _require_binary(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``table`` as int64, raising at the first entry that is not 0 or 1."""
    values = table.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row, col = divmod(int(np.argmax(bad)), table.shape[1])
        raise ValueError(
            f"{str(path)!r} must be a 0/1 marker matrix, but row {table.index[row]!r}, column "
            f"{table.columns[col]!r} holds {table.iat[row, col]!r}; write 1 where the gene "
            "marks the type and 0 elsewhere.")
    return pd.DataFrame(values.astype(np.int64), index=table.index, columns=table.columns)


def read_marker_csv(path: str | Path) -> pd.DataFrame:
    """A CellAssign marker CSV (first column the gene, one column per type, 0/1 entries;
    ``FL_celltype.csv`` names its index column "Gene") as the binary genes × types matrix
    (int64) the model takes, genes in file order."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file; pass the path of the marker CSV.")
    table = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"{str(path)!r} holds {table.shape[0]} genes × {table.shape[1]} "
                         "types; pass a CSV with the genes in the first column and one "
                         "column per cell type.")
    table.index = table.index.astype(str).str.strip().rename(None)
    table.columns = table.columns.astype(str).str.strip()
    duplicated = table.index[table.index.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"{str(path)!r} lists the genes {duplicated} more than once; keep "
                         "one row per gene.")
    return _require_binary(table, path)


def runtime_markers(fl_markers: pd.DataFrame) -> pd.DataFrame:
    """The runtime panel's markers: the follicular-lymphoma matrix without TRAC (23 × 5)."""
    if RUNTIME_DROPPED_MARKER not in fl_markers.index:
        raise ValueError(f"the marker matrix has no {RUNTIME_DROPPED_MARKER!r} row; pass the "
                         "follicular-lymphoma markers (FL_celltype.csv).")
    return fl_markers.drop(index=RUNTIME_DROPPED_MARKER)


# ----------------------------------------------------------------- CellAssign data sets


def _unique(names: pd.Index) -> pd.Index:
    """``names`` with repeats suffixed ``-1``, ``-2``… (as ``var_names_make_unique``)."""
    return ad.utils.make_index_unique(pd.Index(names.astype(str)))


def _size_factors(adata: ad.AnnData, key: str | None, counts: sp.csr_matrix) -> np.ndarray:
    """``obs[key]``, or with ``key=None`` each cell's total over ALL genes over the mean
    total (computed before the genes are cut to the markers); positive and finite."""
    if key is None:
        totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
        values = totals / max(totals.mean(), 1e-12)
    else:
        values = pd.to_numeric(require_obs_column(adata, key, "size_factor_key"),
                               errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} cells have a size factor that is not a positive number (first "
            f"{adata.obs_names[int(np.argmax(bad))]!r}); drop empty cells or pass "
            "size_factor_key=None to use each cell's total count.")
    return values


def _truth(adata: ad.AnnData, truth_key: str) -> pd.Categorical:
    truth = require_obs_column(adata, truth_key, "truth_key")
    if truth.isna().any():
        raise ValueError(f"obs[{truth_key!r}] is missing for {int(truth.isna().sum())} cells; "
                         "drop them or pass the column holding every cell's label.")
    return pd.Categorical(truth.astype(str).to_numpy())


def prepare_cellassign_data(
    adata: ad.AnnData, markers: pd.DataFrame, truth_key: str = "celltype",
    size_factor_key: str | None = "size_factor",
) -> ad.AnnData:
    """A paper CellAssign data set (``sce_*_annotated_final.h5ad``) in the layout of the
    CellAssign rules: raw counts ``(n_cells, n_markers)`` CSR float32 in ``X`` (from
    ``layers["counts"]`` when present, else ``X``), the published labels
    ``obs[truth_key]`` as ``obs["cell_type"]`` and the size factors as
    ``obs["size_factor"]`` (``size_factor_key=None``: total counts over all genes over
    their mean). Cell and gene names are made unique; the genes are the markers that are
    measured, in the marker matrix's order (missing ones are logged).
    """
    var_names, obs_names = _unique(adata.var_names), _unique(adata.obs_names)
    counts = _counts_csr(adata, "the CellAssign data")
    names = set(var_names)
    measured = [g for g in markers.index.astype(str) if g in names]
    missing = [g for g in markers.index.astype(str) if g not in names]
    if not measured:
        raise ValueError(f"none of the {len(markers)} marker genes is measured (e.g. "
                         f"{list(markers.index[:3])} vs {list(var_names[:3])}); pass the "
                         "markers and counts of the same gene naming.")
    if missing:
        log.warning("%d of %d markers are not measured and are left out: %s", len(missing),
                    len(markers), missing)
    obs = pd.DataFrame(index=pd.Index(obs_names, name="cell"))
    obs["cell_type"] = _truth(adata, truth_key)
    obs["size_factor"] = _size_factors(adata, size_factor_key, counts)
    columns = var_names.get_indexer(measured)
    return ad.AnnData(counts[:, columns], obs=obs,
                      var=pd.DataFrame(index=pd.Index(measured, name="gene")))


# ----------------------------------------------------------------- wing disc (Fig. 2)


def select_amp_cells(metadata_csv: str | Path) -> pd.DataFrame:
    """The AMP cells (``Cell_Type == "AMP"``: 19,885 of 26,989) of the authors' per-cell
    metadata ``Everetts_Worley_et_al_Metadata.csv``, one row a cell, indexed by
    ``Barcode + "." + Batch_ID``. Columns: ``barcode``, ``batch`` (the paper's names,
    96hr_1 … 120hr_2), ``timepoint`` (96H, 120H), ``sex`` (FEMALE, MALE), ``cluster``
    (Annotated_Clusters: DIR_1, IND_1 … IND_9) and ``domain`` (Direct, Indirect)."""
    path = Path(metadata_csv)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file; pass the path of "
                         "Everetts_Worley_et_al_Metadata.csv.")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    absent = [c for c in _METADATA_COLUMNS if c not in table.columns]
    if absent:
        raise ValueError(f"{str(path)!r} lacks the columns {absent}; pass the authors' "
                         "per-cell metadata (Everetts_Worley_et_al_Metadata.csv).")
    amp = table[table["Cell_Type"] == "AMP"]
    unknown = sorted(set(amp["Batch_ID"]) - set(WING_DISC_BATCHES))
    if unknown:
        raise ValueError(f"{str(path)!r} has AMP cells of unknown batches {unknown}; the "
                         f"study's batches are {list(WING_DISC_BATCHES)}.")
    cells = pd.DataFrame({
        "barcode": amp["Barcode"].to_numpy(),
        "batch": pd.Categorical(amp["Batch_ID"].map(WING_DISC_BATCHES).to_numpy(),
                                categories=list(WING_DISC_BATCHES.values())),
        "timepoint": pd.Categorical(amp["Timepoint"].to_numpy(), categories=["96H", "120H"]),
        "sex": pd.Categorical(amp["Cell_Sex"].to_numpy(), categories=["FEMALE", "MALE"]),
        "cluster": pd.Categorical(amp["Annotated_Clusters"].to_numpy()),
        "domain": pd.Categorical(amp["Grouped_Domains"].to_numpy()),
    }, index=pd.Index((amp["Barcode"] + "." + amp["Batch_ID"]).to_numpy(), name="cell"))
    if cells.index.duplicated().any():
        raise ValueError(f"{str(path)!r} names some AMP cells twice (e.g. "
                         f"{cells.index[cells.index.duplicated()][0]!r}); pass the original file.")
    return cells


def _gene_list(adata: ad.AnnData, key: str) -> list[str]:
    if key not in adata.uns:
        raise ValueError(f"uns[{key!r}] is missing (uns keys: {sorted(adata.uns)}); pass "
                         "nuisance_genes= naming the cell-cycle and sex genes.")
    return [str(g) for g in np.asarray(adata.uns[key]).ravel()]


def _nuisance_genes(adata: ad.AnnData, genes: Sequence[str] | None) -> list[str]:
    """The given nuisance genes, else uns cell-cycle genes then sex genes; each measured
    and named once."""
    genes = ([*_gene_list(adata, "cell_cycle_genes"), *_gene_list(adata, "sex_genes")]
             if genes is None else [str(g) for g in genes])
    repeated = sorted({g for g in genes if genes.count(g) > 1})
    absent = [g for g in genes if g not in adata.var_names]
    if not genes or repeated or absent:
        raise ValueError(f"the nuisance genes must be measured genes named once (got "
                         f"{len(genes)}, repeated {repeated}, not measured {absent[:5]}); "
                         "fix uns['cell_cycle_genes'] / uns['sex_genes'] or pass nuisance_genes=.")
    return genes


def _gene_roles(adata: ad.AnnData, markers: list[str], nuisance: list[str]) -> pd.Categorical:
    """``var["gene_role"]``: marker, cell_cycle or sex (by the uns lists), nuisance for a
    nuisance gene neither list names, background for the rest."""
    role = pd.Series("background", index=adata.var_names, dtype=object)
    role[markers] = "marker"
    cell_cycle = set(adata.uns.get("cell_cycle_genes", []))
    sex = set(adata.uns.get("sex_genes", []))
    role[nuisance] = ["sex" if g in sex else "cell_cycle" if g in cell_cycle else "nuisance"
                      for g in nuisance]
    used = [r for r in GENE_ROLES if r != "nuisance" or (role == "nuisance").any()]
    return pd.Categorical(role.to_numpy(), categories=used)


def _barcode_of(name: str) -> str | None:
    match = _BARCODE.search(name)
    return match.group(0) if match else None


def _join_metadata(obs: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """The authors' annotations of each cell, matched by (10x barcode in the cell name,
    batch): ``timepoint``, ``cell_state`` (the cluster), ``domain`` and ``sex``."""
    barcodes = [_barcode_of(str(n)) for n in obs.index]
    keys = pd.MultiIndex.from_arrays([barcodes, obs["batch"].astype(str).to_numpy()])
    by_key = metadata.set_index(["barcode", metadata["batch"].astype(str)])
    found = keys.isin(by_key.index)
    if not found.all():
        first = obs.index[int(np.argmax(~found))]
        raise ValueError(
            f"{int((~found).sum())} of {len(obs)} cells have no row in the metadata (first "
            f"{first!r}, batch {obs['batch'].iloc[int(np.argmax(~found))]!r}); cells are "
            "matched by the 10x barcode in their name and obs['batch']: pass the AMP cells "
            "of select_amp_cells and the same batch names.")
    rows = by_key.loc[keys]
    # The simulator's names: its cell_state is the authors' cluster.
    renamed = {"timepoint": "timepoint", "cluster": "cell_state", "domain": "domain",
               "sex": "sex"}
    return pd.DataFrame({
        ours: pd.Categorical(rows[theirs].astype(str).to_numpy(),
                             categories=pd.Categorical(metadata[theirs]).categories)
        for theirs, ours in renamed.items()
    }, index=obs.index)


def _wing_disc_obs(adata: ad.AnnData) -> pd.DataFrame:
    """``obs["batch"]`` as a categorical (the paper's batches in time order when it uses
    their names), cells named uniquely."""
    batch = require_obs_column(adata, "batch", "the batch column").astype(str)
    known = [b for b in WING_DISC_BATCHES.values() if b in set(batch)]
    categories = known if len(known) == batch.nunique() else sorted(batch.unique())
    return pd.DataFrame({"batch": pd.Categorical(batch.to_numpy(), categories=categories)},
                        index=pd.Index(_unique(adata.obs_names), name="cell"))


def _marker_genes(adata: ad.AnnData, genes: Sequence[str] | None,
                  nuisance: list[str]) -> list[str]:
    """The measured, non-nuisance genes of ``genes`` (default: the simulator's panel)."""
    wanted = [str(g) for g in (MARKER_GENES if genes is None else genes)]
    markers = [g for g in wanted if g in adata.var_names and g not in nuisance]
    if not markers:
        raise ValueError(f"none of the marker genes {wanted[:5]} is a measured, non-nuisance "
                         "gene; pass marker_genes= naming genes of the file.")
    if len(markers) < len(wanted):
        log.warning("%d of %d marker genes are not measured (or are nuisance genes): %s",
                    len(wanted) - len(markers), len(wanted), sorted(set(wanted) - set(markers)))
    return markers


def prepare_wing_disc(
    adata: ad.AnnData, nuisance_genes: Sequence[str] | None = None,
    marker_genes: Sequence[str] | None = None, metadata: pd.DataFrame | None = None,
) -> ad.AnnData:
    """The paper's ``myoblasts.h5ad`` in the layout of the simulated wing disc, so that
    the covariates study's rules (prepare_covariates onwards) read it unchanged.

    Returns raw counts ``(n_cells, n_genes)`` CSR float32 in ``X`` and
    ``layers["counts"]``; ``obs["batch"]`` (categorical); ``var["gene_role"]``; and in
    ``uns`` the lists ``nuisance_genes`` (``nuisance_genes``, by default the file's
    ``uns["cell_cycle_genes"]`` then ``uns["sex_genes"]``: 51 + 4 = 55), ``marker_genes``
    (the measured ones of ``marker_genes``, by default the simulator's panel of 31 real
    AMP genes: the paper's Fig. 2e list is not available), ``cell_cycle_genes`` and
    ``sex_genes``. With ``metadata`` (``select_amp_cells``), obs also gets the authors'
    ``timepoint``, ``cell_state`` (cluster), ``domain`` and ``sex``. The simulator's
    cell-cycle truth (``cycle_phase``, ``s_score``, ``g2m_score``, ``cycle_score``) and
    ``library_size`` have no real counterpart and are not made up.
    """
    counts = _counts_csr(adata, "the wing-disc counts")
    obs = _wing_disc_obs(adata)
    if metadata is not None:
        obs = obs.join(_join_metadata(obs, metadata))
    prepared = ad.AnnData(counts, obs=obs,
                          var=pd.DataFrame(index=pd.Index(_unique(adata.var_names), name="gene")))
    prepared.uns.update({k: _gene_list(adata, k) for k in ("cell_cycle_genes", "sex_genes")
                         if k in adata.uns})
    nuisance = _nuisance_genes(prepared, nuisance_genes)
    markers = _marker_genes(prepared, marker_genes, nuisance)
    prepared.var["gene_role"] = _gene_roles(prepared, markers, nuisance)
    prepared.layers["counts"] = counts.copy()
    prepared.uns["marker_genes"] = markers
    prepared.uns["nuisance_genes"] = nuisance
    return prepared
