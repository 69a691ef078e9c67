"""Antibody (ADT) preprocessing of CITE-seq data, and coarse PBMC cell types from ADTs.

The totalVI paper (Gayoso et al. 2021, Methods) removed isotype controls and summed the
clones of one target in the Hao et al. PBMC reference; ``remove_isotype_controls`` and
``sum_antibody_clones`` do both on a cells × antibodies DataFrame ``(n_cells,
n_proteins)``. ``antibody_target`` strips a panel suffix (``CD8a_TotalSeqB`` → ``CD8a``).

``coarse_types_from_adt`` labels cells ``B``, ``CD4 T``, ``CD8 T``, ``NK``, ``Monocyte``
or ``unassigned`` by gating seven markers on CLR-normalised ADT counts, with one
threshold per marker learned from the data (Otsu). Real PBMC data carry no labels; these
give tests and figures a label that does not come from the RNA the models see.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

from scprob.data.fields import first_bad_entry, require_unique

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


def clone_groups(names: list[str]) -> dict[str, list[str]]:
    """Output column → the input columns summed into it, in order of first appearance.

    Rule: a column ``<stem>-<digits>`` is a clone of ``<stem>`` when at least two columns
    name that stem with a clone number (``CD3-1``, ``CD3-2``); a column named exactly
    ``<stem>`` joins that family (its name is the family's output name). A lone
    ``<stem>-<digits>`` (``PD-1``) and names without a trailing dash-number (``HLA-DR``,
    ``TCR-V-alpha-7.2``, ``CD45RA``) stay as they are.
    """
    stems = [_clone_stem(name) for name in names]
    families = {stem for stem, n in Counter(s for s in stems if s).items() if n > 1}
    groups: dict[str, list[str]] = {}
    for name, stem in zip(names, stems, strict=True):
        groups.setdefault(stem if stem in families else name, []).append(name)
    return groups


def sum_antibody_clones(proteins: pd.DataFrame) -> pd.DataFrame:
    """``proteins`` ``(n_cells, n_proteins)`` with the clones of each target summed into
    one column named by the target (rule in ``clone_groups``); columns in order of first
    appearance, dtype and index kept."""
    names = [str(column) for column in proteins.columns]
    require_unique(names, "antibody columns", "give each antibody its own name")
    columns = proteins.set_axis(names, axis=1)
    summed = {target: columns[members].sum(axis=1)
              for target, members in clone_groups(names).items()}
    return pd.DataFrame(summed, index=proteins.index).rename_axis(
        columns=proteins.columns.name)


# ------------------------------------------------------------------ coarse cell types


def clr_normalize(proteins: pd.DataFrame) -> pd.DataFrame:
    """Per-cell centred log-ratio of ADT counts ``(n_cells, n_proteins)``:
    ``log1p(x)`` minus the cell's mean ``log1p`` over all columns (the pseudocount-1
    convention of Seurat's CLR, computed across proteins within each cell), float64."""
    values = proteins.to_numpy(dtype=np.float64)
    flat = first_bad_entry(values.ravel())
    if flat is not None:
        row, col = divmod(flat, values.shape[1])
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
