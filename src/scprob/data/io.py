"""Readers for real CITE-seq count data, into the layout the models read.

Both readers return an AnnData whose ``X`` and ``layers["counts"]`` are the RNA counts
``(n_cells, n_genes)`` as CSR float32, and whose ``obsm["protein_expression"]`` is a
DataFrame ``(n_cells, n_proteins)`` of float32 antibody counts with the antibody names as
columns (the layout of the CITE-seq simulator, so real and simulated data are
interchangeable).

* ``read_10x_mtx_tar``: a Cell Ranger matrix folder packed as a ``.tar.gz``, read in
  memory (no extraction to disk). Cell Ranger v3 (``features.tsv``): "Gene Expression"
  features become the genes, "Antibody Capture" features the proteins (isotype controls
  included; drop them by name if unwanted). Cell Ranger v1/v2 (``genes.tsv``, e.g. the 10x
  68k PBMCs): every feature is a gene and there is no ``obsm["protein_expression"]``.
* ``read_h5ad_cite_seq``: the old scvi-tools h5ad layout (dense ``X``, protein counts as a
  plain array in ``obsm["protein_expression"]``, names in ``uns["protein_names"]``).
* ``read_cite_seq_csv``: two gzip (or plain) CSV tables, features × cells, first column the
  feature name: RNA counts and antibody counts of the same cells (the layout of the totalVI
  paper's ``pbmc10k_harmo_rna.csv.gz`` / ``pbmc10k_harmo_pro.csv.gz``).

Spatial deconvolution data in the spacexr (RCTD) CSV layout, into AnnData with integer
counts as CSR float32 in ``X`` and each barcode's full-transcriptome total in
``obs["nUMI"]``:

* ``read_spacexr_reference(folder)``: ``counts.csv`` (genes × cells), ``cell_types.csv``
  (barcode, label → ``obs["cell_type"]``), ``nUMI.csv``;
* ``read_spacexr_spatial(folder)``: ``counts.csv`` (genes × spots), ``coords.csv``
  (barcode, x, y → ``obsm["spatial"]`` ``(n_spots, 2)``), ``nUMI.csv``.

Streamed h5ad files, for matrices too large to hold twice: ``atomic_h5ad`` opens a file
that appears under its name only once complete, ``write_csr_rows`` appends CSR row blocks
to ``X`` ``(n_obs, n_vars)`` float32 (int64 ``indptr``), ``write_h5ad_annotations`` adds
``obs``/``var``/``uns`` as ``anndata.write_h5ad`` lays them out, and ``read_csr_rows``
reads chosen rows of an on-disk CSR ``X`` a chunk at a time.

Marker-based annotation (CellAssign):

* ``read_marker_yaml(path)``: a YAML mapping of cell type → marker genes, as the CellAssign
  paper ships its lists, into the binary genes × types matrix the model takes;
* ``read_cellbench(counts, metadata, gene_map)``: CellBench's CSV layout (genes × cells
  counts keyed by Ensembl ID, per-cell metadata with the demuxlet genotype call), the
  genotype-confirmed singlets as cells × gene symbols with ``obs["cell_line"]``.
"""

from __future__ import annotations

import gzip
import io
import os
import secrets
import tarfile
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
import yaml

from scprob.data.fields import first_bad_cell, require_unique

PROTEIN_KEY = "protein_expression"
GENE_EXPRESSION = "Gene Expression"
ANTIBODY_CAPTURE = "Antibody Capture"
_MATRIX_FILES = ("matrix.mtx", "features.tsv", "barcodes.tsv")
# Cell Ranger v1/v2 name the features file genes.tsv (gene id, symbol; no feature type).
_GENES_FILE = "genes.tsv"

# Elements per HDF5 chunk of a streamed X's data, indices and indptr (256 KB of float32).
HDF5_CHUNK_ELEMENTS = 1 << 16
# Rows per contiguous read of an on-disk CSR matrix (read_csr_rows).
READ_CHUNK_ROWS = 20_000


def _is_junk(name: str) -> bool:
    """macOS metadata that tar picks up: ``.DS_Store`` and AppleDouble ``._*`` files."""
    base = PurePosixPath(name).name
    return base == ".DS_Store" or base.startswith("._")


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:  # pragma: no cover - regular files always have a handle
        raise ValueError(f"cannot read {member.name!r} from the archive.")
    data = handle.read()
    return gzip.decompress(data) if member.name.endswith(".gz") else data


def _as_csr_float32(matrix: np.ndarray | sp.spmatrix) -> sp.csr_matrix:
    return sp.csr_matrix(matrix, dtype=np.float32)


def open_tar(path: Path) -> tarfile.TarFile:
    """``path`` opened as a (compressed) tar archive; a ValueError names a broken one."""
    try:
        return tarfile.open(path, mode="r:*")
    except tarfile.TarError as err:
        raise ValueError(f"{str(path)!r} is not a readable tar archive ({err}).") from err


def _require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file; pass the path of the file to read.")
    return path


def _named_members(archive: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """The archive's matrix-folder files as (name without ``.gz``, member), junk skipped."""
    for member in archive.getmembers():
        if not member.isfile() or _is_junk(member.name):
            continue
        base = PurePosixPath(member.name).name.removesuffix(".gz")
        if base in (*_MATRIX_FILES, _GENES_FILE):
            yield base, member


def _matrix_members(archive: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    """The archive's one ``matrix.mtx``, features file and ``barcodes.tsv`` (``.gz`` or
    not, in any folder), keyed by their names without ``.gz``: the features file is
    ``features.tsv`` (Cell Ranger v3) or ``genes.tsv`` (v1/v2), never both."""
    found: dict[str, tarfile.TarInfo] = {}
    for base, member in _named_members(archive):
        if base in found:
            raise ValueError(
                f"{str(path)!r} holds two {base} files ({found[base].name!r} and "
                f"{member.name!r}); pack one matrix folder (one genome) per archive."
            )
        found[base] = member
    _require_one_layout(found, path)
    return found


def _require_one_layout(found: dict[str, tarfile.TarInfo], path: Path) -> None:
    """Raise unless ``found`` is one complete v3 (features.tsv) or v1/v2 (genes.tsv) set."""
    if "features.tsv" in found and _GENES_FILE in found:
        raise ValueError(f"{str(path)!r} holds both features.tsv (Cell Ranger v3) and "
                         "genes.tsv (v1/v2); pack one matrix folder per archive.")
    required = [n for n in _MATRIX_FILES if n != "features.tsv" or _GENES_FILE not in found]
    missing = [name for name in required if name not in found]
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks {missing}: expected a Cell Ranger matrix folder, "
            "matrix.mtx, barcodes.tsv and features.tsv (v3) or genes.tsv (v1/v2), each "
            "optionally gzipped.")


def _read_tsv(raw: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(raw), sep="\t", header=None, dtype=str,
                       keep_default_na=False)


def _features_table(raw: bytes, path: Path) -> pd.DataFrame:
    """``features.tsv`` as columns ``id``, ``name``, ``feature_type``, one row a feature."""
    features = _read_tsv(raw)
    if features.shape[1] < 3:
        raise ValueError(f"features.tsv in {str(path)!r} has {features.shape[1]} columns; "
                         "Cell Ranger v3 writes id, name and feature type.")
    features = features.iloc[:, :3].set_axis(["id", "name", "feature_type"], axis=1)
    unsupported = sorted(set(features["feature_type"]) - {GENE_EXPRESSION, ANTIBODY_CAPTURE})
    if unsupported:
        raise ValueError(f"unsupported feature types {unsupported} in {str(path)!r}; this "
                         f"reader splits {GENE_EXPRESSION!r} and {ANTIBODY_CAPTURE!r} only.")
    return features


def _genes_table(raw: bytes, path: Path) -> pd.DataFrame:
    """Cell Ranger v1/v2 ``genes.tsv`` (gene id, symbol) in the layout of
    ``_features_table``: the format has no feature type, so every row is a gene."""
    genes = _read_tsv(raw)
    if genes.shape[1] < 2:
        raise ValueError(f"genes.tsv in {str(path)!r} has {genes.shape[1]} column; Cell "
                         "Ranger v1/v2 write the gene id and the gene symbol.")
    genes = genes.iloc[:, :2].set_axis(["id", "name"], axis=1)
    genes["feature_type"] = GENE_EXPRESSION
    return genes


def _split_rna_and_antibodies(
    counts: sp.csr_matrix, features: pd.DataFrame, barcodes: pd.Series,
    with_proteins: bool = True,
) -> ad.AnnData:
    """``counts`` ``(n_barcodes, n_features)`` split by feature type into RNA ``X`` and
    the antibody DataFrame ``obsm["protein_expression"]`` (left out when
    ``with_proteins`` is False: a v1/v2 archive cannot hold antibodies)."""
    is_gene = (features["feature_type"] == GENE_EXPRESSION).to_numpy()
    obs = pd.DataFrame(index=pd.Index(barcodes.to_numpy(), name="barcode"))
    genes = features[is_gene]
    var = pd.DataFrame({"gene_ids": genes["id"].to_numpy()},
                       index=pd.Index(genes["name"].to_numpy(), name="gene"))
    rna = counts[:, np.flatnonzero(is_gene)]
    adata = ad.AnnData(X=rna, obs=obs, var=var)
    adata.var_names_make_unique()
    adata.layers["counts"] = rna.copy()
    if not with_proteins:
        return adata
    antibodies = features[~is_gene]
    adata.obsm[PROTEIN_KEY] = pd.DataFrame(
        counts[:, np.flatnonzero(~is_gene)].toarray(), index=adata.obs_names,
        columns=pd.Index(antibodies["name"].to_numpy(), name="protein"),
    )
    return adata


def read_10x_mtx_tar(path: str | Path) -> ad.AnnData:
    """A Cell Ranger matrix folder packed as a ``.tar.gz``: RNA in ``X``, ADTs in obsm.

    The archive must hold exactly one ``matrix.mtx[.gz]``, ``barcodes.tsv[.gz]`` and
    features file (in any folder): ``features.tsv[.gz]`` (Cell Ranger v3) or ``genes.tsv``
    (v1/v2, e.g. ``filtered_matrices_mex/hg19/`` of the 10x 68k PBMCs); macOS junk entries
    are ignored. Returns ``X``/``layers["counts"]`` ``(n_barcodes, n_genes)`` CSR float32
    with gene symbols as ``var_names`` (made unique) and ``var["gene_ids"]``. A v3 archive
    adds ``obsm["protein_expression"]`` ``(n_barcodes, n_antibodies)`` named by the
    features' name column (e.g. ``CD3_TotalSeqB``; no columns when it has no antibodies);
    a v1/v2 archive has no such entry, since its format cannot hold antibodies.
    """
    path = _require_file(path)
    with open_tar(path) as archive:
        found = _matrix_members(archive, path)
        raw = {name: _read_member(archive, member) for name, member in found.items()}
    for name, data in raw.items():
        if not data or data.isspace():  # isspace stops at the first other byte: no copy
            raise ValueError(f"{found[name].name!r} in {str(path)!r} is empty; pack the "
                             "matrix folder exactly as Cell Ranger wrote it.")

    # MatrixMarket stores features × barcodes.
    counts = _as_csr_float32(scipy.io.mmread(io.BytesIO(raw["matrix.mtx"])).T)
    is_v3 = "features.tsv" in raw
    features = (_features_table(raw["features.tsv"], path) if is_v3
                else _genes_table(raw[_GENES_FILE], path))
    barcodes = _read_tsv(raw["barcodes.tsv"])[0]
    if counts.shape != (len(barcodes), len(features)):
        raise ValueError(
            f"matrix.mtx is {counts.shape[1]} features × {counts.shape[0]} barcodes but the "
            f"archive lists {len(features)} features and {len(barcodes)} barcodes."
        )
    return _split_rna_and_antibodies(counts, features, barcodes, with_proteins=is_v3)


def read_h5ad_cite_seq(
    path: str | Path, protein_key: str = PROTEIN_KEY, names_key: str = "protein_names"
) -> ad.AnnData:
    """An h5ad with protein counts as a plain array in ``obsm[protein_key]`` and their
    names in ``uns[names_key]`` (the old scvi-tools test-data layout).

    Returns ``X``/``layers["counts"]`` ``(n_cells, n_genes)`` CSR float32 and
    ``obsm[protein_key]`` a float32 DataFrame ``(n_cells, n_proteins)`` whose columns are
    ``uns[names_key]``. A file whose proteins are already a DataFrame keeps its columns.
    """
    path = _require_file(path)
    with warnings.catch_warnings():
        # The layout is old by definition; anndata reads it correctly and says so per element.
        warnings.simplefilter("ignore", ad.OldFormatWarning)
        adata = ad.read_h5ad(path)
    if protein_key not in adata.obsm:
        raise ValueError(f"{str(path)!r} has no obsm[{protein_key!r}] (obsm keys: "
                         f"{sorted(adata.obsm)}); pass protein_key= naming the protein counts.")
    proteins = adata.obsm[protein_key]
    if isinstance(proteins, pd.DataFrame):
        columns = pd.Index(proteins.columns.astype(str), name="protein")
        values = proteins.to_numpy()
    else:
        values = proteins.toarray() if sp.issparse(proteins) else np.asarray(proteins)
        if names_key not in adata.uns:
            raise ValueError(f"{str(path)!r} stores proteins as an array but has no "
                             f"uns[{names_key!r}] naming them; pass names_key=.")
        names = [str(n) for n in np.asarray(adata.uns[names_key]).ravel()]
        if len(names) != values.shape[1]:
            raise ValueError(f"uns[{names_key!r}] names {len(names)} proteins but "
                             f"obsm[{protein_key!r}] has {values.shape[1]} columns.")
        columns = pd.Index(names, name="protein")
    adata.obsm[protein_key] = pd.DataFrame(values.astype(np.float32), index=adata.obs_names,
                                           columns=columns)
    adata.X = _as_csr_float32(adata.X)
    adata.layers["counts"] = adata.X.copy()
    adata.var_names_make_unique()
    return adata



def _read_features_by_cells(path: Path) -> pd.DataFrame:
    """A features × cells CSV (first column the feature name) as float32 ``(n_features,
    n_cells)``, parsed straight to float32 so no float64 copy of the table is built."""
    # Every column float32 except the first, the feature names (a dict keyed by position).
    dtypes = defaultdict(lambda: np.float32, {0: str})
    try:
        table = pd.read_csv(path, index_col=0, dtype=dtypes)
    except (ValueError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{str(path)!r} is not a numeric features × cells CSV ({err}); pass "
                         "a table of counts with the feature names in the first column.") from err
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"{str(path)!r} holds {table.shape[0]} features × {table.shape[1]} "
                         "cells; pass a features × cells table with the feature names in "
                         "the first column and one column per cell.")
    table.index = table.index.astype(str)
    table.columns = table.columns.astype(str)
    _require_csv_counts(table, path)
    return table


def _require_csv_counts(table: pd.DataFrame, path: Path) -> None:
    """Raise unless every entry of ``table`` is a finite non-negative integer, naming the
    first offending row, column and value."""
    values = table.to_numpy()
    bad = first_bad_cell(values)
    if bad is None:
        return
    row, col = bad
    value = float(values[row, col])
    kind = "negative" if value < 0 else (
        "not finite" if not np.isfinite(value) else "not an integer")
    raise ValueError(
        f"{str(path)!r} must hold raw counts (non-negative integers), but the value {value!r} "
        f"in row {table.index[row]!r}, column {table.columns[col]!r} is {kind}. Pass raw "
        "counts, not normalised or log-transformed values."
    )


def _example(names: pd.Index) -> str:
    return f" (e.g. {names[0]!r})" if len(names) else ""


def _same_cells(rna: pd.DataFrame, proteins: pd.DataFrame, rna_path: Path,
                protein_path: Path) -> pd.DataFrame:
    """``proteins`` with its cell columns in the order of ``rna``'s; raise if the two tables
    do not name the same cells."""
    rna_cells, protein_cells = rna.columns, proteins.columns
    if rna_cells.equals(protein_cells):
        return proteins
    only_rna = rna_cells[~rna_cells.isin(protein_cells)]
    only_protein = protein_cells[~protein_cells.isin(rna_cells)]
    if len(only_rna) or len(only_protein):
        raise ValueError(
            f"the RNA table {str(rna_path)!r} and the protein table {str(protein_path)!r} "
            f"name different cells: {len(only_rna)} of the {len(rna_cells)} RNA cells are "
            f"not in the protein table{_example(only_rna)} and {len(only_protein)} of the "
            f"{len(protein_cells)} protein cells are not in the RNA table"
            f"{_example(only_protein)}. Pass the RNA and protein tables of the same cells."
        )
    return proteins[rna_cells]


def read_cite_seq_csv(rna_csv: str | Path, protein_csv: str | Path) -> ad.AnnData:
    """CITE-seq counts from two features × cells CSV tables (gzip or plain), first column the
    feature name, one column per cell barcode.

    Returns ``X``/``layers["counts"]`` ``(n_cells, n_genes)`` CSR float32 with the gene
    names as ``var_names`` (made unique) and the barcodes as ``obs_names``, and
    ``obsm["protein_expression"]`` a float32 DataFrame ``(n_cells, n_proteins)`` named by
    the protein table's rows. The protein table may list the cells in another order; it
    is reordered to the RNA table's.
    """
    rna_path, protein_path = _require_file(rna_csv), _require_file(protein_csv)
    rna = _read_features_by_cells(rna_path)
    proteins = _read_features_by_cells(protein_path)
    require_unique(list(proteins.index), f"protein names of {str(protein_path)!r}",
                   "sum or drop the repeated antibodies first")
    proteins = _same_cells(rna, proteins, rna_path, protein_path)
    counts = _as_csr_float32(rna.to_numpy().T)
    # Unique before AnnData sees them, which would otherwise warn about repeated names.
    genes = ad.utils.make_index_unique(pd.Index(rna.index, name="gene"))
    adata = ad.AnnData(
        X=counts, obs=pd.DataFrame(index=pd.Index(rna.columns, name="barcode")),
        var=pd.DataFrame(index=genes),
    )
    adata.layers["counts"] = counts.copy()
    adata.obsm[PROTEIN_KEY] = pd.DataFrame(
        proteins.to_numpy().T, index=adata.obs_names,
        columns=pd.Index(proteins.index, name="protein"),
    )
    return adata

@contextmanager
def atomic_h5ad(path: str | Path) -> Iterator[h5py.File]:
    """An h5py file under a temporary name beside ``path``, renamed to ``path`` on success
    and deleted on any error, so ``path`` is either complete or untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        with h5py.File(temporary, "w") as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_csr_rows(
    handle: h5py.File, row_blocks: Iterable[sp.csr_matrix], n_vars: int, chunk_size: int
) -> None:
    """Write ``X`` ``(n_rows, n_vars)`` CSR float32 from consecutive row blocks.

    Blocks are gathered until ``chunk_size`` rows are pending, then appended in one go, so
    memory holds one chunk of rows, never the whole matrix. ``indptr`` is int64 so that
    files with more than 2**31 stored values work.
    """
    ad.io.write_elem(
        handle,
        "X",
        sp.csr_matrix((0, n_vars), dtype=np.float32),
        # Explicit HDF5 chunks: for an empty resizable dataset h5py would guess tiny ones
        # (1 element for indptr), whose index then grows with the file, and with it
        # resident memory and read time (docs/simulators.md).
        dataset_kwargs={"indptr_dtype": np.int64, "chunks": (HDF5_CHUNK_ELEMENTS,)},
    )
    on_disk = ad.io.sparse_dataset(handle["X"])
    pending: list[sp.csr_matrix] = []
    pending_rows = 0
    for block in row_blocks:
        pending.append(block)
        pending_rows += block.shape[0]
        if pending_rows >= chunk_size:
            on_disk.append(sp.vstack(pending, format="csr", dtype=np.float32))
            pending, pending_rows = [], 0
    if pending:
        on_disk.append(sp.vstack(pending, format="csr", dtype=np.float32))


def write_h5ad_annotations(
    handle: h5py.File, obs: pd.DataFrame, var: pd.DataFrame, uns: dict[str, Any]
) -> None:
    """Everything of an h5ad besides ``X``, as ``anndata.write_h5ad`` lays it out.

    ``obs`` ``(n_obs, ...)`` and ``var`` ``(n_vars, ...)`` must match the ``X`` already in
    ``handle``; the other slots (``obsm``, ``layers`` ...) are written empty.
    """
    n_obs, n_vars = handle["X"].attrs["shape"]
    if (len(obs), len(var)) != (n_obs, n_vars):
        raise ValueError(
            f"obs/var have {len(obs)} × {len(var)} entries but X is {n_obs} × {n_vars}."
        )
    ad.io.write_elem(handle, "obs", obs)
    ad.io.write_elem(handle, "var", var)
    for key in ("obsm", "varm", "obsp", "varp", "layers"):
        ad.io.write_elem(handle, key, {})
    ad.io.write_elem(handle, "uns", uns)
    handle.attrs["encoding-type"] = "anndata"
    handle.attrs["encoding-version"] = "0.1.0"


def read_csr_rows(
    group: h5py.Group, rows: np.ndarray, chunk_rows: int = READ_CHUNK_ROWS
) -> sp.csr_matrix:
    """Rows ``rows`` (sorted, unique) of the on-disk CSR matrix ``group``, as an in-memory
    CSR float32 ``(len(rows), n_cols)``.

    The result's arrays are allocated once at their final size (row lengths come from the
    stored ``indptr``) and filled ``chunk_rows`` stored rows at a time, each a contiguous
    read from the first to the last wanted row, so the peak is the result plus one chunk.
    """
    matrix = ad.io.sparse_dataset(group)
    row_lengths = np.diff(group["indptr"][...])[rows]
    indptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(row_lengths, out=indptr[1:])
    data = np.empty(int(indptr[-1]), dtype=np.float32)
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    for start in range(0, int(matrix.shape[0]), chunk_rows):
        first, last = np.searchsorted(rows, [start, start + chunk_rows])
        if first == last:
            continue
        low, high = int(rows[first]), int(rows[last - 1]) + 1
        chunk = sp.csr_matrix(matrix[low:high])[rows[first:last] - low]
        data[indptr[first] : indptr[last]] = chunk.data
        indices[indptr[first] : indptr[last]] = chunk.indices
    return sp.csr_matrix((data, indices, indptr), shape=(rows.size, int(matrix.shape[1])))


# ----------------------------------------------------------------- spacexr CSV folders


def _spacexr_table(folder: Path, name: str) -> pd.DataFrame:
    path = folder / name
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise ValueError(f"{str(path)!r} is missing: a spacexr folder holds counts.csv, "
                         f"nUMI.csv and cell_types.csv or coords.csv (found: {present}).")
    return pd.read_csv(path, index_col=0)


def _spacexr_counts(folder: Path, extra: str) -> tuple[ad.AnnData, pd.DataFrame]:
    """Counts (genes × barcodes in the file) as cells × genes, and the ``extra`` table
    (indexed by barcode), both checked to name the same barcodes."""
    counts = _spacexr_table(folder, "counts.csv")
    n_umi = _spacexr_table(folder, "nUMI.csv").iloc[:, 0]
    table = _spacexr_table(folder, extra)
    barcodes = pd.Index(counts.columns.astype(str))
    for name, other in (("nUMI.csv", n_umi.index), (extra, table.index)):
        other = pd.Index(other.astype(str))
        if set(other) != set(barcodes):
            missing = sorted(set(barcodes) - set(other))
            raise ValueError(
                f"{name} in {str(folder)!r} does not name the barcodes of counts.csv: "
                f"{len(missing)} of its {len(barcodes)} barcodes are missing (e.g. "
                f"{missing[:3]}), {len(set(other) - set(barcodes))} are extra. Use files "
                "written together.")
    values = counts.to_numpy().T
    if not np.array_equal(values, np.round(values)) or (values < 0).any():
        raise ValueError(f"counts.csv in {str(folder)!r} must hold non-negative integers.")
    adata = ad.AnnData(_as_csr_float32(values))
    adata.obs_names, adata.var_names = barcodes, counts.index.astype(str)
    adata.obs["nUMI"] = n_umi.set_axis(n_umi.index.astype(str)).loc[barcodes].to_numpy()
    return adata, table.set_axis(table.index.astype(str)).loc[barcodes]


def read_spacexr_reference(folder: str | Path) -> ad.AnnData:
    """A single-cell reference in spacexr's layout: cells × genes, ``obs["cell_type"]``."""
    adata, labels = _spacexr_counts(Path(folder), "cell_types.csv")
    adata.obs["cell_type"] = pd.Categorical(labels.iloc[:, 0].astype(str).to_numpy())
    return adata


def read_spacexr_spatial(folder: str | Path) -> ad.AnnData:
    """Spatial spots in spacexr's layout: spots × genes, ``obsm["spatial"]`` (x, y)."""
    adata, coords = _spacexr_counts(Path(folder), "coords.csv")
    adata.obsm["spatial"] = coords[["x", "y"]].to_numpy(dtype=np.float64)
    return adata


# ------------------------------------------------------------------ marker-based data


def read_marker_yaml(path: str | Path) -> pd.DataFrame:
    """A ``{cell type: [genes]}`` YAML file as the binary genes × types matrix (int64),
    genes in order of first mention."""
    path = _require_file(path)
    table = yaml.safe_load(path.read_text())
    if not _is_marker_table(table):
        raise ValueError(f"{str(path)!r} is not a marker list: it must map each cell type "
                         "to a non-empty list of marker genes.")
    genes = list(dict.fromkeys(str(g) for markers in table.values() for g in markers))
    rho = pd.DataFrame(0, index=pd.Index(genes, name=None), columns=[str(t) for t in table],
                       dtype=np.int64)
    for cell_type, markers in table.items():
        rho.loc[[str(g) for g in markers], str(cell_type)] = 1
    return rho


def _is_marker_table(table: object) -> bool:
    """Whether a parsed YAML document maps each of at least one type to a non-empty list."""
    if not isinstance(table, dict) or not table:
        return False
    return all(isinstance(genes, list) and len(genes) > 0 for genes in table.values())


def _strip_version(ids: pd.Index) -> pd.Index:
    """``ENSG00000141510.17`` → ``ENSG00000141510``."""
    return pd.Index(ids.astype(str).str.replace(r"\.\d+$", "", regex=True))


def read_cellbench(counts_csv: str | Path, metadata_csv: str | Path,
                   gene_map_csv: str | Path) -> ad.AnnData:
    """CellBench cells confirmed as singlets by demuxlet (``demuxlet_cls == "SNG"``):
    ``X`` the counts ``(n_singlets, n_genes)`` CSR float32, genes named by symbol through
    ``gene_map_csv`` (header-less ``ensembl_id,symbol``; IDs without a symbol keep their
    ID, ERCC spike-ins are dropped, IDs sharing a symbol are summed) and
    ``obs["cell_line"]`` the genotype call."""
    counts = pd.read_csv(_require_file(counts_csv), index_col=0)
    metadata = pd.read_csv(_require_file(metadata_csv), index_col=0)
    gene_map = pd.read_csv(_require_file(gene_map_csv), header=None,
                           names=["ensembl_id", "symbol"])
    for column in ("cell_line_demuxlet", "demuxlet_cls"):
        if column not in metadata.columns:
            raise ValueError(f"{str(metadata_csv)!r} has no column {column!r}: pass the "
                             "CellBench metadata file (sc_<technology>.metadata.csv.gz).")
    missing = pd.Index(counts.columns.astype(str)).difference(metadata.index.astype(str))
    if len(missing):
        raise ValueError(f"{len(missing)} cells of {str(counts_csv)!r} have no row in "
                         f"{str(metadata_csv)!r} (e.g. {list(missing[:3])}): use the count "
                         "and metadata files of the same technology.")
    metadata = metadata.set_axis(metadata.index.astype(str))
    singlets = [c for c in counts.columns.astype(str)
                if metadata.loc[c, "demuxlet_cls"] == "SNG"]
    counts = counts.set_axis(counts.columns.astype(str), axis=1)[singlets]
    ids = _strip_version(counts.index)
    keep = ~ids.str.startswith("ERCC-")
    symbols = pd.Series(gene_map["symbol"].astype(str).to_numpy(),
                        index=_strip_version(pd.Index(gene_map["ensembl_id"])))
    symbols = symbols[~symbols.index.duplicated()]
    names = symbols.reindex(ids[keep]).fillna(pd.Series(ids[keep], index=ids[keep]))
    by_symbol = counts.loc[keep].set_axis(names.to_numpy()).groupby(level=0, sort=False).sum()
    values = by_symbol.to_numpy().T
    if not np.array_equal(values, np.round(values)) or (values < 0).any():
        raise ValueError(f"{str(counts_csv)!r} must hold non-negative integer counts.")
    adata = ad.AnnData(_as_csr_float32(values))
    adata.obs_names, adata.var_names = singlets, by_symbol.index.astype(str)
    adata.obs["cell_line"] = pd.Categorical(
        metadata.loc[singlets, "cell_line_demuxlet"].astype(str).to_numpy())
    return adata
