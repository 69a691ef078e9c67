"""Antibody (ADT) preprocessing of CITE-seq data, and coarse PBMC cell types from ADTs.

The totalVI paper (Gayoso et al. 2021, Methods) removed isotype controls and summed the
clones of one target in the Hao et al. PBMC reference; ``remove_isotype_controls`` and
``sum_antibody_clones`` do both on a cells × antibodies DataFrame ``(n_cells,
n_proteins)``. ``antibody_target`` strips a panel suffix (``CD8a_TotalSeqB`` → ``CD8a``).

``coarse_types_from_adt`` labels cells ``B``, ``CD4 T``, ``CD8 T``, ``NK``, ``Monocyte``
or ``unassigned`` by gating seven markers on CLR-normalised ADT counts, with one
threshold per marker learned from the data (Otsu). Real PBMC data carry no labels; these
give tests and figures a label that does not come from the RNA the models see.

``prepare_hao_reference`` and ``prepare_covid_query`` are the paper's preprocessing of its
totalVI-scArches pair (Fig. 3; the notebook ``scarches_totalvi_seurat_data.ipynb`` of
YosefLab/scvi-tools-reproducibility): the Hao et al. PBMC reference
(``pbmc_seurat_v4.h5ad``) and the Su et al. COVID-19 query (``covid_cite.h5ad``), both
returned as raw counts in ``X`` with proteins in ``obsm["protein_expression"]`` and the
study's ``obs`` columns.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from importlib.util import find_spec

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprob.data.fields import first_bad_cell, require_obs_column, require_unique
from scprob.data.io import PROTEIN_KEY

logger = logging.getLogger(__name__)

COARSE_TYPES: tuple[str, ...] = ("B", "CD4 T", "CD8 T", "NK", "Monocyte", "unassigned")
UNASSIGNED = "unassigned"

# Each gating marker and the antibody targets that measure it; the first present is used.
GATING_MARKERS: dict[str, tuple[str, ...]] = {
    "CD3": ("CD3",),
    "CD4": ("CD4",),
    "CD8": ("CD8", "CD8a"),
    "CD14": ("CD14",),
    "CD19": ("CD19",),
    "CD56": ("CD56",),
    "CD16": ("CD16",),
}

_PANEL_SUFFIX = re.compile(r"[_-](?:TotalSeq[-_]?[ABC]|ADT)$", re.IGNORECASE)
# "isotype" anywhere; a species-prefixed IgG (Mouse-IgG1, Rat-IgG2b, Armenian-Hamster-IgG);
# or an IgG subclass followed by "control"/"ctrl" (IgG1_control_TotalSeqB, 10x panels).
_ISOTYPE = re.compile(
    r"isotype"
    r"|^(?:armenian[-_ ]?)?(?:mouse|rat|hamster)[-_ ]?igg"
    r"|^igg\d*[a-z]?[-_ ](?:control|ctrl)",
    re.IGNORECASE,
)
_CLONE = re.compile(r"^(?P<stem>.+)-(?P<clone>\d+)$")
# In the Hao et al. panel ``<root>-1``/``<root>-2`` are two clones of one target, except
# for these roots: Notch-1/Notch-2 are different proteins, and so are TCR-1/TCR-2.
HAO_CLONE_EXCLUDED: tuple[str, ...] = ("Notch", "TCR")


def antibody_target(name: str) -> str:
    """The target of an antibody column: ``name`` without a panel suffix such as
    ``_TotalSeqB``, ``-TotalSeqA``, ``_TotalSeqC`` or ``_ADT`` (``CD8a_TotalSeqB`` →
    ``CD8a``); other names are returned unchanged."""
    return _PANEL_SUFFIX.sub("", name)


def is_isotype_control(name: str) -> bool:
    """Whether an antibody column is an isotype control (case-insensitive): its name
    contains ``isotype``, starts with a mouse/rat/(Armenian) hamster IgG (``Mouse-IgG1``,
    ``Rat-IgG2b``), or is an IgG subclass followed by ``control``/``ctrl``
    (``IgG1_control_TotalSeqB``). Anti-human IgD/IgM targets are not controls."""
    return _ISOTYPE.search(name) is not None


def remove_isotype_controls(proteins: pd.DataFrame) -> pd.DataFrame:
    """``proteins`` ``(n_cells, n_proteins)`` without its isotype-control columns
    (``is_isotype_control``), the other columns in their order."""
    keep = [not is_isotype_control(str(column)) for column in proteins.columns]
    return proteins.loc[:, keep]


def _clone_stem(name: str) -> str | None:
    match = _CLONE.match(name)
    return match.group("stem") if match else None


def _require_stems(exclude: Sequence[str]) -> frozenset[str]:
    # A bare string would be read as its characters and exclude nothing by name.
    if isinstance(exclude, str):
        raise ValueError(
            f"exclude must be a sequence of stems, not the string {exclude!r}; pass "
            f"({exclude!r},) to exclude one stem."
        )
    return frozenset(exclude)


def clone_groups(names: list[str], exclude: Sequence[str] = ()) -> dict[str, list[str]]:
    """Output column → the input columns summed into it, in order of first appearance.

    Rule: a column ``<stem>-<digits>`` is a clone of ``<stem>`` when at least two columns
    name that stem with a clone number (``CD3-1``, ``CD3-2``); a column named exactly
    ``<stem>`` joins that family (its name is the family's output name). A lone
    ``<stem>-<digits>`` (``PD-1``) and names without a trailing dash-number (``HLA-DR``,
    ``TCR-V-alpha-7.2``, ``CD45RA``) stay as they are, and so do the columns of a stem in
    ``exclude`` (``Notch-1`` and ``Notch-2`` are two proteins, not two clones).
    """
    excluded = _require_stems(exclude)
    stems = [_clone_stem(name) for name in names]
    counts = Counter(s for s in stems if s and s not in excluded)
    families = {stem for stem, n in counts.items() if n > 1}
    groups: dict[str, list[str]] = {}
    for name, stem in zip(names, stems, strict=True):
        groups.setdefault(stem if stem in families else name, []).append(name)
    return groups


def sum_antibody_clones(proteins: pd.DataFrame, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """``proteins`` ``(n_cells, n_proteins)`` with the clones of each target summed into
    one column named by the target (rule in ``clone_groups``; stems in ``exclude`` are
    never summed); columns in order of first appearance, dtype and index kept."""
    names = [str(column) for column in proteins.columns]
    require_unique(names, "antibody columns", "give each antibody its own name")
    columns = proteins.set_axis(names, axis=1)
    summed = {target: columns[members].sum(axis=1)
              for target, members in clone_groups(names, exclude).items()}
    return pd.DataFrame(summed, index=proteins.index).rename_axis(
        columns=proteins.columns.name)


# ------------------------------------------------------------------ coarse cell types


def clr_normalize(proteins: pd.DataFrame) -> pd.DataFrame:
    """Per-cell centred log-ratio of ADT counts ``(n_cells, n_proteins)``:
    ``log1p(x)`` minus the cell's mean ``log1p`` over all columns (the pseudocount-1
    convention of Seurat's CLR, computed across proteins within each cell), float64."""
    values = proteins.to_numpy(dtype=np.float64)
    bad = first_bad_cell(values)
    if bad is not None:
        row, col = bad
        raise ValueError(
            f"ADT counts must be non-negative integers, but cell {proteins.index[row]!r}, "
            f"protein {proteins.columns[col]!r} holds {float(values[row, col])!r}. Pass raw "
            "antibody counts, not normalised values."
        )
    logged = np.log1p(values)
    return pd.DataFrame(logged - logged.mean(axis=1, keepdims=True), index=proteins.index,
                        columns=proteins.columns)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of 1-D ``values`` ``(n_cells,)``: the cut between two consecutive
    distinct values that maximises the between-class variance, computed exactly over
    every cut (no histogram bins), returned as the midpoint of the two values."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    below = np.arange(1, n)
    cumulative = np.cumsum(ordered)
    mean_low = cumulative[:-1] / below
    mean_high = (cumulative[-1] - cumulative[:-1]) / (n - below)
    between = below * (n - below) * (mean_low - mean_high) ** 2
    # A cut inside a run of ties would split equal values into both classes.
    between[ordered[1:] == ordered[:-1]] = -1.0
    cut = int(np.argmax(between))
    return float((ordered[cut] + ordered[cut + 1]) / 2)


def _targets_by_name(proteins: pd.DataFrame) -> dict[str, list[str]]:
    """Lower-case target → the columns measuring it."""
    found: dict[str, list[str]] = {}
    for column in proteins.columns:
        found.setdefault(antibody_target(str(column)).lower(), []).append(str(column))
    return found


def _missing_marker_error(missing: list[str], proteins: pd.DataFrame) -> ValueError:
    targets = [antibody_target(str(column)) for column in proteins.columns]
    hint = ("; sum antibody clones such as CD3-1/CD3-2 first (sum_antibody_clones)"
            if any(_clone_stem(t) for t in targets) else "")
    needed = ", ".join("/".join(options) for options in GATING_MARKERS.values())
    return ValueError(
        f"coarse_types_from_adt needs the ADT markers {missing} (it gates on {needed}), but "
        f"the panel's targets are {targets}. Pass an antibody panel measuring them{hint}."
    )


def marker_columns(proteins: pd.DataFrame) -> dict[str, str]:
    """Gating marker (``GATING_MARKERS``) → the column of ``proteins`` measuring it,
    matched by ``antibody_target``, case-insensitively."""
    by_target = _targets_by_name(proteins)
    chosen: dict[str, str] = {}
    missing: list[str] = []
    for marker, options in GATING_MARKERS.items():
        present = [o for o in options if o.lower() in by_target]
        if not present:
            missing.append("/".join(options))
            continue
        columns = by_target[present[0].lower()]
        if len(columns) > 1:
            raise ValueError(f"columns {columns} all measure {present[0]}: sum them first "
                             "(sum_antibody_clones) or drop all but one.")
        chosen[marker] = columns[0]
    if missing:
        raise _missing_marker_error(missing, proteins)
    return chosen


def marker_thresholds(clr: pd.DataFrame, columns: dict[str, str]) -> dict[str, float]:
    """Marker → its Otsu threshold on the CLR values of its column of ``clr``
    ``(n_cells, n_proteins)``."""
    thresholds: dict[str, float] = {}
    for marker, column in columns.items():
        values = clr[column].to_numpy()
        if np.unique(values).size < 2:
            raise ValueError(
                f"the CLR of {column!r} takes one value in all {values.size} cells, so no "
                "threshold separates positive from negative cells; pass a whole sample "
                "(hundreds of cells of several types)."
            )
        thresholds[marker] = otsu_threshold(values)
    return thresholds


def gate_coarse_types(positive: dict[str, np.ndarray]) -> np.ndarray:
    """Labels ``(n_cells,)`` from the markers' positive calls (rules in
    ``coarse_types_from_adt``); the rules are mutually exclusive."""
    cd3, cd19, cd14 = positive["CD3"], positive["CD19"], positive["CD14"]
    cd4, cd8 = positive["CD4"], positive["CD8"]
    t_cell = cd3 & ~cd19 & ~cd14
    lineage_negative = ~cd3 & ~cd19 & ~cd14
    rules = {
        "B": cd19 & ~cd3,
        "CD4 T": t_cell & cd4 & ~cd8,
        "CD8 T": t_cell & cd8 & ~cd4,
        "NK": lineage_negative & (positive["CD56"] | positive["CD16"]),
        "Monocyte": cd14 & ~cd3 & ~cd19,
    }
    return np.select(list(rules.values()), list(rules), default=UNASSIGNED)


def coarse_types_from_adt(proteins: pd.DataFrame) -> pd.Series:
    """Coarse PBMC types of cells from their ADT counts ``(n_cells, n_proteins)``.

    Counts are CLR-normalised per cell (``clr_normalize``: ``log1p`` minus the cell's
    mean ``log1p`` over the columns given, so drop isotype controls first if they should
    not count). Each marker (CD3, CD4, CD8 or else CD8a, CD14, CD19, CD56, CD16; matched
    by ``antibody_target``, case-insensitive) is positive above its own Otsu threshold.
    Otsu, not a two-component Gaussian mixture: it is exact and deterministic (no
    initialisation), and a mixture with unequal variances can cross posterior 0.5 twice
    or split a trimodal marker (CD4: negative, monocyte-dim, T-bright) between its two
    positive modes. Rules, in words:

    * ``CD4 T``: CD3+ CD19- CD14- CD4+ CD8-; ``CD8 T``: CD3+ CD19- CD14- CD8+ CD4-;
    * ``B``: CD19+ CD3-;
    * ``Monocyte``: CD14+ CD3- CD19-;
    * ``NK``: CD3- CD19- CD14- and (CD56+ or CD16+) — CD16+ CD14-dim monocytes that fall
      below the CD14 threshold land here too;
    * ``unassigned``: everything else (CD3+ CD4+ CD8+ or CD4- CD8-, marker conflicts such
      as CD3+ CD19+ doublets, cells negative for all markers).

    Returns a categorical Series (categories ``COARSE_TYPES``) indexed like ``proteins``,
    with the thresholds (on the CLR scale) in ``attrs["thresholds"]``.
    """
    columns = marker_columns(proteins)
    clr = clr_normalize(proteins)
    thresholds = marker_thresholds(clr, columns)
    positive = {m: clr[c].to_numpy() > thresholds[m] for m, c in columns.items()}
    labels = pd.Series(pd.Categorical(gate_coarse_types(positive), categories=COARSE_TYPES),
                       index=proteins.index, name="coarse_type")
    labels.attrs["thresholds"] = thresholds
    return labels


# ------------------------------------------------------------------ the paper's scArches pair

# The paper's rules (substrings of a column name) for the controls of each panel.
HAO_CONTROL_MARKS: tuple[str, ...] = ("IgG",)
SU_CONTROL_MARKS: tuple[str, ...] = ("Isotype", "Anti")
# The paper's quality bounds on the reference (natural log of a cell's protein total).
HAO_LOG_PROTEIN_TOTAL = (7.6, 10.3)
HAO_MIN_PROTEINS_DETECTED = 150  # strictly more than this many nonzero proteins
HAO_MAX_PERCENT_MT = 12.0  # percent of a cell's RNA counts in genes named MT-*
DOUBLET_LABEL = "Doublet"
# The paper ran the scrublet package with its default expected doublet rate (its log
# reads "Expected = 10.0%"); scanpy's default is 5 %.
SCRUBLET_EXPECTED_DOUBLET_RATE = 0.1


def drop_columns_containing(proteins: pd.DataFrame, marks: Sequence[str]) -> pd.DataFrame:
    """``proteins`` ``(n_cells, n_proteins)`` without the columns whose name contains any
    of ``marks`` (case-sensitive, the paper's rule for control antibodies)."""
    keep = [not any(mark in str(column) for mark in marks) for column in proteins.columns]
    return proteins.loc[:, keep]


def _require_proteins(adata: ad.AnnData, protein_key: str) -> pd.DataFrame:
    if protein_key not in adata.obsm:
        raise ValueError(
            f"adata.obsm has no {protein_key!r} (obsm keys: {sorted(adata.obsm)}). Pass "
            "protein_key= naming the protein counts."
        )
    proteins = adata.obsm[protein_key]
    if not isinstance(proteins, pd.DataFrame):
        raise ValueError(
            f"adata.obsm[{protein_key!r}] is a {type(proteins).__name__}, not a DataFrame, "
            "so its antibodies have no names. Store the counts as a pandas DataFrame whose "
            "columns are the antibody names."
        )
    return proteins


def _require_obs_columns(adata: ad.AnnData, keys: dict[str, str]) -> None:
    """Raise ``ValueError`` for the first ``role → key`` whose column ``obs`` lacks."""
    for role, key in keys.items():
        require_obs_column(adata, key, role)


def _mt_percent(adata: ad.AnnData) -> np.ndarray:
    """Percent of each cell's RNA counts in genes whose name starts with ``MT-``
    ``(n_cells,)``; NaN for a cell without RNA counts (it then fails the filter)."""
    mt = np.flatnonzero(adata.var_names.str.startswith("MT-"))
    if mt.size == 0:
        raise ValueError(
            "no gene name starts with 'MT-', so the mitochondrial filter (< 12 % of a "
            "cell's counts) cannot be applied. Pass human gene symbols as var_names."
        )
    total = np.asarray(adata.X.sum(axis=1), dtype=np.float64).ravel()
    in_mt = np.asarray(adata.X[:, mt].sum(axis=1), dtype=np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * in_mt / total


def hao_quality_filters(adata: ad.AnnData, proteins: pd.DataFrame,
                        label_key: str) -> dict[str, np.ndarray]:
    """The paper's reference filters, in its order: filter → cells passing ``(n_cells,)``.

    ``proteins`` ``(n_cells, n_proteins)`` are the clone-summed counts; the paper computed
    the protein total and the detected count on them before dropping its IgG controls.
    """
    values = proteins.to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_total = np.log(values.sum(axis=1))  # log(0) = -inf fails the lower bound
    low, high = HAO_LOG_PROTEIN_TOTAL
    return {
        f"log protein total > {low}": log_total > low,
        f"log protein total < {high}": log_total < high,
        f"proteins detected > {HAO_MIN_PROTEINS_DETECTED}":
            (values > 0).sum(axis=1) > HAO_MIN_PROTEINS_DETECTED,
        f"{label_key} != {DOUBLET_LABEL!r}":
            (adata.obs[label_key].astype(str) != DOUBLET_LABEL).to_numpy(),
        f"percent MT- counts < {HAO_MAX_PERCENT_MT:g}": _mt_percent(adata) < HAO_MAX_PERCENT_MT,
    }


def apply_filters(filters: dict[str, np.ndarray], what: str) -> tuple[np.ndarray, dict[str, int]]:
    """Cells passing every filter ``(n_cells,)``, and how many cells each filter removed
    of those the earlier ones kept (logged, as the paper applied them one after another)."""
    kept = np.ones(len(next(iter(filters.values()))), dtype=bool)
    removed: dict[str, int] = {}
    for name, passing in filters.items():
        removed[name] = int((kept & ~passing).sum())
        kept &= passing
        logger.info("%s: %s removed %d cells, %d remain", what, name, removed[name], kept.sum())
    return kept, removed


def choose_masked_batches(batches: pd.Series, n_masked_batches: int, seed: int) -> list[str]:
    """``n_masked_batches`` of the distinct ``batches`` (sorted names, permuted by
    ``numpy.random.default_rng(seed)``), returned sorted."""
    names = np.array(sorted(set(batches.astype(str))))
    if not 0 <= n_masked_batches <= names.size:
        raise ValueError(
            f"n_masked_batches={n_masked_batches} is not between 0 and the {names.size} "
            "batches left after filtering. Pass a number of batches in that range."
        )
    chosen = np.random.default_rng(seed).permutation(names)[:n_masked_batches]
    return sorted(str(name) for name in chosen)


def _study_anndata(adata: ad.AnnData, proteins: pd.DataFrame, columns: dict[str, str],
                   dataset: str) -> ad.AnnData:
    """A new AnnData: ``X`` and ``layers["counts"]`` CSR float32 copies of ``adata.X``,
    proteins as a float32 DataFrame in ``obsm["protein_expression"]``, ``obs`` with every
    original column plus each ``columns`` study name (the ``obs`` column it copies, as str)
    and ``dataset``."""
    obs = adata.obs.copy()
    for name, key in columns.items():
        obs[name] = adata.obs[key].astype(str).to_numpy()
    obs["dataset"] = dataset
    counts = sp.csr_matrix(adata.X, dtype=np.float32, copy=True)
    out = ad.AnnData(X=counts, obs=obs, var=adata.var.copy())
    out.layers["counts"] = counts.copy()
    out.obsm[PROTEIN_KEY] = pd.DataFrame(
        proteins.to_numpy(dtype=np.float32), index=out.obs_names,
        columns=pd.Index([str(c) for c in proteins.columns], name="protein"))
    return out


def prepare_hao_reference(
    adata: ad.AnnData,
    n_masked_batches: int = 5,
    seed: int = 0,
    protein_key: str = "protein_counts",
    batch_key: str = "orig.ident",
    label_key: str = "celltype.l2",
    donor_key: str = "donor",
) -> ad.AnnData:
    """The paper's reference: the Hao et al. PBMC CITE-seq (``pbmc_seurat_v4.h5ad``,
    161,764 cells × 20,729 genes, raw counts in ``X``, proteins a DataFrame in
    ``obsm[protein_key]``) preprocessed as in the paper (161,764 → 152,094 cells, 213
    proteins).

    Steps, in the paper's order: sum the clones of each target (stems in
    ``HAO_CLONE_EXCLUDED`` are not clones); keep cells whose natural-log protein total is
    in (7.6, 10.3), with more than 150 nonzero proteins, not labelled ``Doublet`` in
    ``label_key`` and with under 12 % of their RNA counts in ``MT-`` genes (protein
    metrics on the summed panel, controls included, as the paper computed them; each
    filter's removals are logged and kept in ``uns["qc_removed"]``); drop the IgG isotype
    controls (names containing ``IgG``); then set to 0 all proteins of
    ``n_masked_batches`` batches (``choose_masked_batches``), mimicking batches measured
    without proteins (the paper masks 5 of 24).

    Returns a new AnnData: ``X`` and ``layers["counts"]`` CSR float32 ``(n_kept,
    n_genes)``, ``obsm["protein_expression"]`` a float32 DataFrame ``(n_kept,
    n_proteins)``, ``obs`` with the original columns plus ``batch`` (``batch_key``),
    ``donor``, ``cell_type`` (``label_key``) as str and ``dataset = "reference"``, and the
    masked batch names in ``uns["masked_batches"]``.
    """
    proteins = _require_proteins(adata, protein_key)
    _require_obs_columns(adata, {"batch_key": batch_key, "label_key": label_key,
                                 "donor_key": donor_key})
    summed = sum_antibody_clones(proteins, exclude=HAO_CLONE_EXCLUDED)
    kept, removed = apply_filters(hao_quality_filters(adata, summed, label_key), "reference")
    panel = drop_columns_containing(summed.loc[kept], HAO_CONTROL_MARKS)
    batches = adata.obs[batch_key][kept].astype(str)
    masked = choose_masked_batches(batches, n_masked_batches, seed)
    panel = panel.copy()
    panel.loc[batches.isin(masked).to_numpy()] = 0
    out = _study_anndata(adata[kept], panel, {"batch": batch_key, "donor": donor_key,
                                              "cell_type": label_key}, "reference")
    out.uns["masked_batches"] = masked
    out.uns["qc_removed"] = removed
    logger.info("reference: %d of %d cells kept, %d proteins, proteins of %s masked",
                out.n_obs, adata.n_obs, panel.shape[1], masked)
    return out


def _require_scrublet() -> None:
    # scanpy's Scrublet picks its doublet-score threshold with scikit-image; checked first
    # so that a missing package fails before minutes of work, not after.
    missing = [name for name, module in (("scanpy", "scanpy"), ("scikit-image", "skimage"))
               if find_spec(module) is None]
    if missing:
        raise ModuleNotFoundError(
            f"remove_doublets=True runs scanpy.pp.scrublet, whose automatic doublet "
            f"threshold needs {' and '.join(missing)}, not installed. Install "
            f"{' and '.join(missing)} or pass remove_doublets=False."
        )


def scrublet_doublets(adata: ad.AnnData, batch_key: str, seed: int) -> np.ndarray:
    """Scrublet's doublet calls ``(n_cells,)`` on the raw counts ``adata.X``, run on each
    ``batch_key`` batch separately (as the paper did per ``set``) through
    ``scanpy.pp.scrublet`` with the paper's expected doublet rate (10 %). scanpy selects
    genes its own way, so the calls can differ a little from the scrublet package's."""
    _require_scrublet()
    import scanpy as sc  # a workflow dependency, imported only when doublets are removed

    scored = ad.AnnData(
        X=sp.csr_matrix(adata.X, dtype=np.float32, copy=True),
        obs=pd.DataFrame({"batch": adata.obs[batch_key].astype(str).to_numpy()},
                         index=adata.obs_names.astype(str)))
    sc.pp.scrublet(scored, batch_key="batch", random_state=seed, verbose=False,
                   expected_doublet_rate=SCRUBLET_EXPECTED_DOUBLET_RATE)
    return scored.obs["predicted_doublet"].to_numpy(dtype=bool)


def prepare_covid_query(
    adata: ad.AnnData,
    protein_key: str = "pro_exp",
    batch_key: str = "set",
    donor_key: str = "subj_code",
    condition_key: str = "Resp",
    label_key: str = "final_clust_review",
    remove_doublets: bool = True,
    seed: int = 0,
) -> ad.AnnData:
    """The paper's query: the Su et al. COVID-19 PBMC CITE-seq (``covid_cite.h5ad``,
    33,538 genes, raw counts in ``X``, 39 antibodies in ``obsm[protein_key]``).

    Steps: if ``remove_doublets``, drop Scrublet's doublets, called per ``batch_key``
    batch (``scrublet_doublets``; the paper keeps 54,796 cells); drop the antibodies whose
    name contains ``Isotype`` or ``Anti`` (the paper's rule: its four isotype controls and
    the ``Anti…`` columns are controls, not markers of PBMC proteins).

    Returns the layout of ``prepare_hao_reference``: ``X`` and ``layers["counts"]`` CSR
    float32, ``obsm["protein_expression"]`` a float32 DataFrame, ``obs`` with the original
    columns plus ``batch`` (``batch_key``), ``donor`` (``donor_key``), ``condition``
    (``condition_key``) and ``cell_type`` (``label_key``) as str, and ``dataset =
    "query"``. ``cell_type`` holds the study's own labels, a vocabulary different from
    the reference's ``celltype.l2``: compare them through a mapping, not by name.
    """
    proteins = _require_proteins(adata, protein_key)
    columns = {"batch": batch_key, "donor": donor_key, "condition": condition_key,
               "cell_type": label_key}
    _require_obs_columns(adata, {"batch_key": batch_key, "donor_key": donor_key,
                                 "condition_key": condition_key, "label_key": label_key})
    kept = np.ones(adata.n_obs, dtype=bool)
    if remove_doublets:
        kept = ~scrublet_doublets(adata, batch_key, seed)
        logger.info("query: Scrublet removed %d of %d cells", (~kept).sum(), adata.n_obs)
    panel = drop_columns_containing(proteins.loc[kept], SU_CONTROL_MARKS)
    out = _study_anndata(adata[kept], panel, columns, "query")
    out.uns["doublets_removed"] = int((~kept).sum())
    return out
