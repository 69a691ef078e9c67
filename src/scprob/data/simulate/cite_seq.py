"""Offline CITE-seq reference and COVID-19 query for the totalVI-scArches label-transfer study.

``simulate_cite_seq_reference`` mimics a PBMC CITE-seq atlas (Hao et al. 2021: batches of
donor × time point, a large panel, some batches' proteins masked) and
``simulate_cite_seq_query`` a COVID-19 query (Su et al. 2020: new donors, healthy /
moderate / severe, a smaller panel). Both return RNA counts ``(n_cells, n_genes)`` (CSR
float32) and proteins ``obsm["protein_expression"]`` ``(n_cells, n_proteins)``, drawn from
one generative truth, the *world* (``build_cite_seq_world``: 21 cell types as a hierarchy
of gene and protein programs, totalVI's background / foreground protein model). The world
comes from ``world_seed`` alone, so reference and query agree even when simulated
independently; the cells come from ``seed``. The design: ``docs/simulators.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

PROTEIN_KEY = "protein_expression"
CONDITIONS: tuple[str, ...] = ("healthy", "moderate", "severe")

# Independent random streams: the same integer seed never couples the world to the cells.
_WORLD_STREAM = 7_101
_REFERENCE_STREAM = 7_102
_QUERY_STREAM = 7_103

# --------------------------------------------------------------------------- cell types

# (type, compartment, atlas frequency, RNA library-size multiplier). Frequencies follow
# the order of magnitude of the Hao et al. level-2 annotation of healthy PBMCs.
_CELL_TYPES: tuple[tuple[str, str, float, float], ...] = (
    ("CD14 Mono", "Myeloid", 0.190, 1.35),
    ("CD16 Mono", "Myeloid", 0.050, 1.30),
    ("cDC2", "Myeloid", 0.015, 1.25),
    ("pDC", "Myeloid", 0.007, 1.15),
    ("CD4 Naive", "T", 0.130, 0.80),
    ("CD4 TCM", "T", 0.120, 0.85),
    ("CD4 TEM", "T", 0.035, 0.90),
    ("Treg", "T", 0.020, 0.85),
    ("CD4 CTL", "T", 0.020, 0.95),
    ("CD8 Naive", "T", 0.060, 0.80),
    ("CD8 TCM", "T", 0.020, 0.85),
    ("CD8 TEM", "T", 0.075, 0.95),
    ("MAIT", "T", 0.025, 0.95),
    ("gdT", "T", 0.020, 0.90),
    ("NK", "NK", 0.090, 1.00),
    ("NK CD56bright", "NK", 0.008, 1.00),
    ("B naive", "B", 0.055, 0.90),
    ("B intermediate", "B", 0.020, 0.95),
    ("B memory", "B", 0.025, 0.95),
    ("Plasmablast", "B", 0.004, 2.00),
    ("Platelet", "Other", 0.011, 0.40),
)
CELL_TYPES: tuple[str, ...] = tuple(row[0] for row in _CELL_TYPES)


@dataclass(frozen=True)
class _Program:
    """A node of the hierarchy or a cell state: the types it spans, with weights in (0, 1]."""

    name: str
    level: str  # "leukocyte", "compartment", "lineage", "type" or "state"
    members: Mapping[str, float]
    marker_genes: tuple[str, ...] = ()
    # Protein → positivity in (0, 1]: 1 = clearly positive, small = dim.
    marker_proteins: Mapping[str, float] | None = None


def _all(types: Sequence[str], weight: float = 1.0) -> dict[str, float]:
    return dict.fromkeys(types, weight)


_T_TYPES = ("CD4 Naive", "CD4 TCM", "CD4 TEM", "Treg", "CD4 CTL", "CD8 Naive", "CD8 TCM",
            "CD8 TEM", "MAIT", "gdT")
_PROGRAMS: tuple[_Program, ...] = (
    _Program("leukocyte", "leukocyte", _all([t for t in CELL_TYPES if t != "Platelet"]),
             ("PTPRC",), {"CD45": 1.0}),
    # Compartments.
    _Program("T cell", "compartment", _all(_T_TYPES),
             ("CD3E", "CD3D", "CD3G", "CD2", "CD247", "IL32"),
             {"CD3": 1.0, "CD2": 0.9, "CD5": 0.8, "CD7": 0.6}),
    _Program("NK cell", "compartment", _all(["NK", "NK CD56bright"]),
             ("NCAM1", "KLRD1", "KLRF1", "NCR1"),
             {"CD56": 0.9, "CD335": 0.8, "CD94": 0.8, "CD7": 0.8, "CD2": 0.5,
              "CD45RA": 0.8}),
    _Program("B cell", "compartment", _all(["B naive", "B intermediate", "B memory",
                                             "Plasmablast"]),
             ("CD79A", "CD79B", "CD19", "PAX5"), {"CD19": 1.0, "HLA-DR": 0.8}),
    _Program("Myeloid", "compartment", _all(["CD14 Mono", "CD16 Mono", "cDC2", "pDC"]),
             ("TYROBP", "FCER1G", "CST3"), {"HLA-DR": 1.0, "CD33": 0.7, "CD4": 0.35}),
    # Lineages.
    _Program("CD4 T", "lineage", _all(["CD4 Naive", "CD4 TCM", "CD4 TEM", "Treg", "CD4 CTL"]),
             ("CD4", "CD40LG"), {"CD4": 1.0, "TCR-ab": 1.0}),
    _Program("CD8 T", "lineage", {**_all(["CD8 Naive", "CD8 TCM", "CD8 TEM"]), "MAIT": 0.6},
             ("CD8A", "CD8B"), {"CD8a": 1.0, "TCR-ab": 1.0}),
    _Program("gd T", "lineage", {"gdT": 1.0}, ("TRDC", "TRGC1", "TRGC2"),
             {"TCR-gd": 1.0, "TCR-Vd2": 0.9}),
    _Program("B", "lineage", _all(["B naive", "B intermediate", "B memory"]),
             ("MS4A1", "BANK1"), {"CD20": 1.0, "CD21": 0.8, "CD45RA": 0.8}),
    _Program("Plasma", "lineage", {"Plasmablast": 1.0}, ("JCHAIN", "MZB1", "XBP1", "IGHG1"),
             {"CD38": 1.0, "CD27": 1.0}),
    _Program("Monocyte", "lineage", _all(["CD14 Mono", "CD16 Mono"]),
             ("LYZ", "FCN1", "CTSS"), {"CD11b": 1.0, "CD36": 0.8, "CD64": 0.6,
                                        "CD11c": 0.7}),
    _Program("DC", "lineage", _all(["cDC2", "pDC"]), ("HLA-DQA1",), {"CD86": 0.7}),
    _Program("Platelet", "lineage", {"Platelet": 1.0}, ("PPBP", "PF4", "GP9", "ITGA2B"),
             {"CD41": 1.0, "CD61": 1.0, "CD42b": 0.9}),
    # Type-specific programs.
    _Program("Treg", "type", {"Treg": 1.0}, ("FOXP3", "IL2RA", "CTLA4", "RTKN2"),
             {"CD25": 1.0, "TIGIT": 0.7}),
    _Program("CD4 CTL", "type", {"CD4 CTL": 1.0}, ("GZMH",), {"CD57": 0.4}),
    _Program("MAIT", "type", {"MAIT": 1.0},
             ("SLC4A10", "KLRB1", "CCR6", "PRSS35", "TRAV1-2", "ZBTB16"),
             {"TCR-Va7.2": 1.0, "CD161": 1.0, "CD196": 0.7, "CD218a": 0.7, "CD26": 0.6}),
    _Program("NK CD56bright", "type", {"NK CD56bright": 1.0}, ("XCL1", "GZMK", "SELL"),
             {"CD56": 0.6, "CD62L": 0.5}),
    _Program("NK", "type", {"NK": 1.0}, ("FCGR3A", "FGFBP2"), {"CD16": 1.0, "CD57": 0.5}),
    _Program("B naive", "type", {"B naive": 1.0}, ("IGHD", "TCL1A", "FCER2"), {"IgD": 1.0}),
    _Program("B memory", "type", {"B memory": 1.0, "B intermediate": 0.5}, ("AIM2",),
             {"CD27": 0.8}),
    _Program("CD14 Mono", "type", {"CD14 Mono": 1.0}, ("CD14", "S100A8", "S100A9", "VCAN"),
             {"CD14": 1.0}),
    _Program("CD16 Mono", "type", {"CD16 Mono": 1.0}, ("FCGR3A", "MS4A7", "CDKN1C"),
             {"CD16": 1.0, "CD14": 0.2}),
    _Program("cDC2", "type", {"cDC2": 1.0}, ("CD1C", "FCER1A", "CLEC10A"),
             {"CD1c": 1.0, "FceRIa": 0.7, "CD11c": 1.0}),
    _Program("pDC", "type", {"pDC": 1.0}, ("LILRA4", "CLEC4C", "IRF7", "TCF4"),
             {"CD123": 1.0, "CD303": 1.0, "CD304": 0.8}),
    _Program("cycling", "state", {"Plasmablast": 0.6}, ("MKI67", "TOP2A"), {}),
    # Cell states that cut across lineages.
    _Program("naive T", "state", _all(["CD4 Naive", "CD8 Naive"]),
             ("CCR7", "SELL", "LEF1", "TCF7"),
             {"CD45RA": 1.0, "CD62L": 1.0, "CD197": 1.0}),
    _Program("central memory", "state", {"CD4 TCM": 1.0, "CD8 TCM": 1.0, "Treg": 0.5},
             ("CCR7", "SELL"), {"CD197": 0.6, "CD62L": 0.6}),
    _Program("memory T", "state", _all(["CD4 TCM", "CD4 TEM", "Treg", "CD4 CTL", "CD8 TCM",
                                        "CD8 TEM", "MAIT"]),
             ("S100A4",), {"CD45RO": 1.0, "CD95": 0.8}),
    _Program("effector", "state", _all(["CD4 TEM", "CD8 TEM", "CD4 CTL", "MAIT"]),
             ("GZMK", "CCL5"), {"KLRG1": 0.7, "CD161": 0.3}),
    _Program("cytotoxic", "state", {"CD8 TEM": 0.8, "CD4 CTL": 1.0, "NK": 1.0, "gdT": 0.8,
                                    "MAIT": 0.4, "NK CD56bright": 0.4},
             ("GZMB", "GZMH", "GZMA", "PRF1", "GNLY", "NKG7", "CST7"),
             {"CD57": 0.6, "CD244": 0.6, "CD45RA": 0.4}),
    _Program("IL7R", "state", {**_all(["CD4 Naive", "CD4 TCM", "CD4 TEM", "CD8 Naive",
                                       "CD8 TCM", "CD8 TEM"]), "MAIT": 1.0},
             ("IL7R",), {"CD127": 1.0}),
)

# Gene-program shape per level: (fraction of genes with a random effect, effect sd).
_LEVEL_EFFECTS: dict[str, tuple[float, float]] = {
    "leukocyte": (0.02, 0.5),
    "compartment": (0.12, 1.0),
    "lineage": (0.06, 0.8),
    "type": (0.03, 0.6),
    "state": (0.03, 0.5),
}
# Probability that a program switches on each antibody without a named role.
_LEVEL_PROTEIN_PROBABILITY: dict[str, float] = {
    "leukocyte": 0.05, "compartment": 0.12, "lineage": 0.07, "type": 0.03, "state": 0.03,
}

# The antibodies with a role in the programs above. The first 15 are the lineage markers
# every query panel keeps (a COVID panel is small but always stains the lineages).
QUERY_CORE_PROTEINS: tuple[str, ...] = (
    "CD3", "CD4", "CD8a", "CD14", "CD16", "CD19", "CD56", "CD45RA", "CD45RO", "CD127",
    "CD161", "CD25", "HLA-DR", "CD11c", "CD123",
)
_NAMED_PROTEINS: tuple[str, ...] = (
    *QUERY_CORE_PROTEINS,
    "TCR-Va7.2", "CD2", "CD5", "CD7", "CD20", "CD21", "CD27", "CD33", "CD36", "CD38",
    "CD41", "CD42b", "CD45", "CD57", "CD61", "CD62L", "CD64", "CD86", "CD94", "CD95",
    "CD11b", "CD1c", "CD197", "CD196", "CD218a", "CD26", "CD244", "CD303", "CD304",
    "CD335", "FceRIa", "IgD", "KLRG1", "TCR-ab", "TCR-gd", "TCR-Vd2", "TIGIT",
)


def _marker_genes() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for program in _PROGRAMS:
        seen.update(dict.fromkeys(program.marker_genes))
    return tuple(seen)


MARKER_GENES: tuple[str, ...] = _marker_genes()


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class CiteSeqWorld:
    """The generative truth shared by the reference and the query.

    Shapes: ``type_gene_logits`` ``(n_types, n_genes)`` (log of the unnormalised expression
    proportions); ``gene_inverse_dispersion`` ``(n_genes,)``; ``protein_foreground_scale``
    ``(n_types, n_proteins)``, ≥ 1; ``protein_foreground_probability``
    ``(n_types, n_proteins)``; ``protein_background_log_mean``,
    ``protein_background_log_sd`` and ``protein_inverse_dispersion`` ``(n_proteins,)``.
    """

    world_seed: int
    cell_types: tuple[str, ...]
    compartments: tuple[str, ...]
    type_frequencies: np.ndarray
    type_library_scale: np.ndarray
    gene_names: tuple[str, ...]
    type_gene_logits: np.ndarray
    gene_inverse_dispersion: np.ndarray
    protein_names: tuple[str, ...]
    protein_foreground_scale: np.ndarray
    protein_foreground_probability: np.ndarray
    protein_background_log_mean: np.ndarray
    protein_background_log_sd: np.ndarray
    protein_inverse_dispersion: np.ndarray

    @property
    def n_genes(self) -> int:
        return len(self.gene_names)

    @property
    def n_proteins(self) -> int:
        return len(self.protein_names)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}.")
    return int(value)


def build_cite_seq_world(
    world_seed: int = 0, n_genes: int = 1000, n_proteins: int = 200
) -> CiteSeqWorld:
    """Draw the cell-type programs of genes and proteins from ``world_seed`` alone.

    ``n_genes`` must hold the ``len(MARKER_GENES)`` named markers; ``n_proteins`` at least
    the ``len(QUERY_CORE_PROTEINS)`` lineage antibodies (the named antibodies are taken
    in order, then ``ADT_###`` placeholders fill the panel).
    """
    n_genes = _check_int(n_genes, "n_genes", len(MARKER_GENES))
    n_proteins = _check_int(n_proteins, "n_proteins", len(QUERY_CORE_PROTEINS))
    world_seed = _check_int(world_seed, "world_seed", 0)
    rng = np.random.default_rng([world_seed, _WORLD_STREAM])
    gene_names = (*MARKER_GENES,
                  *(f"GENE_{j:04d}" for j in range(n_genes - len(MARKER_GENES))))
    named = _NAMED_PROTEINS[:n_proteins]
    protein_names = (*named, *(f"ADT_{k:03d}" for k in range(len(named), n_proteins)))
    base_logits = _base_gene_logits(rng, n_genes)
    type_gene_logits, positivity = _program_effects(
        rng, base_logits, gene_names, protein_names, n_named_proteins=len(named))
    foreground_scale, foreground_probability, background_log_mean = _protein_foreground(
        rng, positivity)

    frequencies = np.array([row[2] for row in _CELL_TYPES])
    return CiteSeqWorld(
        world_seed=world_seed,
        cell_types=CELL_TYPES,
        compartments=tuple(row[1] for row in _CELL_TYPES),
        type_frequencies=frequencies / frequencies.sum(),
        type_library_scale=np.array([row[3] for row in _CELL_TYPES]),
        gene_names=gene_names,
        type_gene_logits=type_gene_logits,
        gene_inverse_dispersion=np.exp(rng.normal(np.log(3.0), 0.6, n_genes)),
        protein_names=protein_names,
        protein_foreground_scale=foreground_scale,
        protein_foreground_probability=foreground_probability,
        protein_background_log_mean=background_log_mean,
        protein_background_log_sd=rng.uniform(0.2, 0.4, n_proteins),
        protein_inverse_dispersion=np.exp(rng.normal(np.log(8.0), 0.4, n_proteins)),
    )


def _base_gene_logits(rng: np.random.Generator, n_genes: int) -> np.ndarray:
    """Log expression ``(n_genes,)`` shared by every type: markers first, then the rest."""
    base_logits = rng.normal(0.0, 1.5, n_genes)
    # Markers are quiet outside their programs, so they mark rather than merely vary.
    base_logits[: len(MARKER_GENES)] = rng.normal(-1.5, 0.5, len(MARKER_GENES))
    return base_logits


def _program_effects(
    rng: np.random.Generator,
    base_logits: np.ndarray,
    gene_names: Sequence[str],
    protein_names: Sequence[str],
    n_named_proteins: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each type's gene logits ``(n_types, n_genes)`` (base plus the programs it belongs
    to, weighted) and protein positivity ``(n_types, n_proteins)`` in [0, 1]."""
    type_index = {name: i for i, name in enumerate(CELL_TYPES)}
    gene_index = {name: j for j, name in enumerate(gene_names)}
    protein_index = {name: k for k, name in enumerate(protein_names)}
    unnamed = np.arange(n_named_proteins, len(protein_names))
    type_gene_logits = np.tile(base_logits, (len(CELL_TYPES), 1))
    positivity = np.zeros((len(CELL_TYPES), len(protein_names)))
    for program in _PROGRAMS:
        members = np.array([type_index[t] for t in program.members])
        weights = np.array(list(program.members.values()))[:, None]
        type_gene_logits[members] += weights * _program_gene_effect(rng, program, gene_index)
        positivity[members] += weights * _program_protein_levels(
            rng, program, protein_index, unnamed)
    return type_gene_logits, np.clip(positivity, 0.0, 1.0)


def _program_gene_effect(
    rng: np.random.Generator, program: _Program, gene_index: Mapping[str, int]
) -> np.ndarray:
    """Log-fold changes ``(n_genes,)``: random on a fraction of genes, up on its markers."""
    n_genes = len(gene_index)
    fraction, sd = _LEVEL_EFFECTS[program.level]
    effect = np.zeros(n_genes)
    affected = rng.choice(n_genes, size=max(1, round(fraction * n_genes)), replace=False)
    effect[affected] = rng.normal(0.0, sd, affected.size)
    for gene in program.marker_genes:
        effect[gene_index[gene]] += rng.uniform(2.0, 3.0)
    return effect


def _program_protein_levels(
    rng: np.random.Generator,
    program: _Program,
    protein_index: Mapping[str, int],
    unnamed: np.ndarray,
) -> np.ndarray:
    """Positivity ``(n_proteins,)``: its named markers, plus random unnamed antibodies."""
    levels = np.zeros(len(protein_index))
    for protein, level in (program.marker_proteins or {}).items():
        if protein in protein_index:
            levels[protein_index[protein]] = level
    switched_on = unnamed[rng.random(unnamed.size) < _LEVEL_PROTEIN_PROBABILITY[
        program.level]]
    levels[switched_on] = rng.uniform(0.3, 1.0, switched_on.size)
    return levels


def _protein_foreground(
    rng: np.random.Generator, positivity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """totalVI's foreground from positivity ``(n_types, n_proteins)``: its scaling
    ``(n_types, n_proteins)``, ≥ 1, its probability (same shape), and the background's
    log-mean ``(n_proteins,)``."""
    # Positive types stain in most cells, negative ones in a few.
    log_max_scale = rng.uniform(1.5, 3.5, positivity.shape[1])
    foreground_scale = np.exp(positivity * log_max_scale)
    foreground_probability = np.where(positivity > 0, 0.6 + 0.35 * positivity, 0.05)
    # Background of a few to a few tens of counts per cell; at least ~3, so that a protein
    # that was measured is never all-zero in a batch by chance.
    background_log_mean = np.maximum(rng.normal(2.6, 0.5, positivity.shape[1]), np.log(3.0))
    return foreground_scale, foreground_probability, background_log_mean


# --------------------------------------------------------------------------- sampling


def _negative_binomial(
    rng: np.random.Generator, mean: np.ndarray, inverse_dispersion: np.ndarray
) -> np.ndarray:
    """NB(mean, θ) as a gamma–Poisson mixture; ``inverse_dispersion`` broadcasts over rows."""
    theta = np.broadcast_to(inverse_dispersion, mean.shape)
    return rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)


def _split_cells(rng: np.random.Generator, n_cells: int, n_groups: int,
                 concentration: float = 20.0) -> np.ndarray:
    """Uneven group sizes summing to ``n_cells``, each group at least one cell."""
    proportions = rng.dirichlet(np.full(n_groups, concentration))
    return 1 + rng.multinomial(n_cells - n_groups, proportions)


@dataclass
class _GroupEffects:
    """Technical effects of one batch: gene log-fold changes ``(n_genes,)``, a library-size
    multiplier, and the log-mean of the protein background ``(n_proteins_in_world,)``."""

    gene_log_fold_change: np.ndarray
    library_scale: float
    protein_background_log_mean: np.ndarray


def _sample_group(
    world: CiteSeqWorld,
    rng: np.random.Generator,
    type_codes: np.ndarray,
    effects: _GroupEffects,
    mean_library_size: float,
) -> tuple[np.ndarray, np.ndarray]:
    """RNA ``(n, n_genes)`` and protein ``(n, n_proteins)`` counts of one batch's cells."""
    logits = world.type_gene_logits[type_codes] + effects.gene_log_fold_change
    proportions = np.exp(logits - logits.max(axis=1, keepdims=True))
    proportions /= proportions.sum(axis=1, keepdims=True)
    library = np.exp(rng.normal(
        np.log(mean_library_size * effects.library_scale
               * world.type_library_scale[type_codes]), 0.35))
    rna = _negative_binomial(rng, library[:, None] * proportions,
                             world.gene_inverse_dispersion)

    background = np.exp(rng.normal(effects.protein_background_log_mean,
                                   world.protein_background_log_sd,
                                   (type_codes.size, world.n_proteins)))
    in_foreground = rng.random(background.shape) < (
        world.protein_foreground_probability[type_codes])
    protein_mean = background * np.where(in_foreground,
                                         world.protein_foreground_scale[type_codes], 1.0)
    protein = _negative_binomial(rng, protein_mean, world.protein_inverse_dispersion)
    return rna, protein


def _draw_types(rng: np.random.Generator, frequencies: np.ndarray, n_cells: int,
                concentration: float) -> np.ndarray:
    """Cell-type codes ``(n_cells,)`` of one sample, its composition a Dirichlet draw
    around ``frequencies`` (donor-to-donor variation)."""
    composition = rng.dirichlet(concentration * frequencies)
    return rng.choice(len(frequencies), size=n_cells, p=composition)


def _to_anndata(
    world: CiteSeqWorld,
    rna: np.ndarray,
    protein: np.ndarray,
    protein_columns: Sequence[str],
    obs: pd.DataFrame,
) -> ad.AnnData:
    counts = sp.csr_matrix(rna, dtype=np.float32)
    adata = ad.AnnData(
        X=counts,
        obs=obs,
        var=pd.DataFrame(index=pd.Index(world.gene_names, name="gene")),
    )
    adata.layers["counts"] = counts.copy()
    adata.obsm[PROTEIN_KEY] = pd.DataFrame(protein, index=obs.index,
                                           columns=pd.Index(protein_columns, name="protein"))
    adata.var["is_marker"] = adata.var_names.isin(MARKER_GENES)
    return adata


def _categorical(values: Sequence[str] | np.ndarray, categories: Sequence[str]) -> pd.Categorical:
    return pd.Categorical(values, categories=list(categories))


def _draw_group_effects(
    rng: np.random.Generator,
    world: CiteSeqWorld,
    gene_shift: np.ndarray,
    gene_sd: float,
    library_scale: float,
    protein_shift: np.ndarray | float,
    protein_sd: float,
) -> _GroupEffects:
    """One batch's effects: its shared shifts plus batch-specific noise. ``gene_shift``
    ``(n_genes,)``; ``protein_shift`` ``(n_proteins,)`` or scalar, added to the world's
    background log-mean together with a batch-wide N(0, 0.2²) term."""
    return _GroupEffects(
        gene_log_fold_change=gene_shift + rng.normal(0.0, gene_sd, world.n_genes),
        library_scale=library_scale * float(np.exp(rng.normal(0.0, 0.15))),
        protein_background_log_mean=world.protein_background_log_mean + protein_shift
        + rng.normal(0.0, 0.2) + rng.normal(0.0, protein_sd, world.n_proteins),
    )


def _sample_groups(
    world: CiteSeqWorld,
    rng: np.random.Generator,
    sizes: np.ndarray,
    frequencies: Sequence[np.ndarray],
    draw_effects: Callable[[int], _GroupEffects],
    mean_library_size: float,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Cells of each group (batch) in turn: its effects (``draw_effects(g)``), type codes
    from a composition around ``frequencies[g]``, then counts. Returns per group the RNA
    ``(n_g, n_genes)``, protein ``(n_g, n_proteins)`` counts and type codes ``(n_g,)``."""
    rna_parts, protein_parts, type_parts = [], [], []
    for g, size in enumerate(sizes):
        effects = draw_effects(g)
        types = _draw_types(rng, frequencies[g], int(size), concentration=1000.0)
        rna, protein = _sample_group(world, rng, types, effects, mean_library_size)
        rna_parts.append(rna)
        protein_parts.append(protein)
        type_parts.append(types)
    return rna_parts, protein_parts, type_parts


def _stacked_obs(
    parts: Sequence[pd.DataFrame], world: CiteSeqWorld, prefix: str, dataset: str
) -> pd.DataFrame:
    """The groups' ``obs`` stacked, cells named ``{prefix}_000000`` ..., with categorical
    ``cell_type``, its ``compartment`` and a constant ``dataset`` column."""
    obs = pd.concat(parts, ignore_index=True)
    obs.index = pd.Index([f"{prefix}_{i:06d}" for i in range(len(obs))], name="cell")
    obs["cell_type"] = _categorical(obs["cell_type"], world.cell_types)
    obs["compartment"] = _categorical(
        np.asarray(world.compartments)[obs["cell_type"].cat.codes.to_numpy()],
        dict.fromkeys(world.compartments))
    obs["dataset"] = _categorical([dataset] * len(obs), [dataset])
    return obs


# --------------------------------------------------------------------------- reference


def simulate_cite_seq_reference(
    n_cells: int = 6000,
    n_genes: int = 1000,
    n_proteins: int = 200,
    n_batches: int = 24,
    n_masked_batches: int = 5,
    seed: int = 0,
    *,
    world_seed: int = 0,
    n_time_points: int = 3,
    masked_fraction_range: tuple[float, float] = (0.3, 0.5),
    mean_library_size: float = 1500.0,
) -> ad.AnnData:
    """A Hao et al.-like PBMC CITE-seq atlas: donors × time points, a large panel.

    Returns an AnnData with ``X`` and ``layers["counts"]`` ``(n_cells, n_genes)`` CSR
    float32 integer counts; ``obsm["protein_expression"]`` a DataFrame
    ``(n_cells, n_proteins)`` of float32 integer counts; ``obs`` columns ``batch``
    (``P{donor}_{day}``, ``n_batches`` categories, ``n_batches / n_time_points`` donors ×
    days 0, 3, 7), ``donor``, ``time_point`` (day), ``cell_type`` (truth), ``compartment``,
    ``dataset`` = ``"reference"``.

    Protein masking (the paper masks five of the 24 batches so that totalVI learns to
    impute missing proteins): in each of ``n_masked_batches`` random batches, a random
    ``masked_fraction_range`` share of the panel is set to zero in every cell, the
    convention for "not measured". ``uns["protein_masked_batches"]`` lists those batches,
    ``uns["protein_masked_proteins"]`` maps each to its masked proteins, and
    ``obsm["protein_expression_unmasked"]`` keeps the counts before masking (for imputation
    checks). ``masked_fraction_range=(1, 1)`` masks a batch's whole panel.
    """
    n_cells = _check_int(n_cells, "n_cells", 1)
    n_batches = _check_int(n_batches, "n_batches", 1)
    n_time_points = _check_int(n_time_points, "n_time_points", 1)
    n_masked_batches = _check_int(n_masked_batches, "n_masked_batches", 0)
    seed = _check_int(seed, "seed", 0)
    _check_reference_design(n_cells, n_batches, n_time_points, n_masked_batches,
                            masked_fraction_range, mean_library_size)

    world = build_cite_seq_world(world_seed, n_genes, n_proteins)
    rng = np.random.default_rng([seed, _REFERENCE_STREAM])
    n_donors = n_batches // n_time_points
    days = (0, 3, 7) if n_time_points == 3 else tuple(range(n_time_points))
    donors = [f"P{d + 1}" for d in range(n_donors)]
    batches = [f"{donor}_{day}" for donor in donors for day in days]

    # Donor effects dominate time-point effects, as in a vaccination time course.
    donor_gene = rng.normal(0.0, 0.15, (n_donors, world.n_genes))
    day_gene = rng.normal(0.0, 0.05, (n_time_points, world.n_genes))
    donor_protein = rng.normal(0.0, 0.15, (n_donors, world.n_proteins))
    donor_frequencies = rng.dirichlet(300.0 * world.type_frequencies, n_donors)
    sizes = _split_cells(rng, n_cells, n_batches)

    def draw_effects(b: int) -> _GroupEffects:
        d, t = divmod(b, n_time_points)
        return _draw_group_effects(rng, world, donor_gene[d] + day_gene[t], 0.08,
                                   library_scale=1.0, protein_shift=donor_protein[d],
                                   protein_sd=0.1)

    rna_parts, protein_parts, type_parts = _sample_groups(
        world, rng, sizes, [donor_frequencies[b // n_time_points] for b in range(n_batches)],
        draw_effects, mean_library_size)
    obs_parts = [
        pd.DataFrame({"batch": batch, "donor": donors[b // n_time_points],
                      "time_point": days[b % n_time_points],
                      "cell_type": np.asarray(world.cell_types)[type_parts[b]]})
        for b, batch in enumerate(batches)
    ]
    obs = _stacked_obs(obs_parts, world, "ref", "reference")
    obs["batch"] = _categorical(obs["batch"], batches)
    obs["donor"] = _categorical(obs["donor"], donors)

    protein = np.vstack(protein_parts)
    unmasked = protein.copy()
    masked_proteins = _mask_proteins(rng, protein, obs["batch"].cat.codes.to_numpy(), batches,
                                     world, n_masked_batches, masked_fraction_range)

    adata = _to_anndata(world, np.vstack(rna_parts), protein, world.protein_names, obs)
    adata.obsm["protein_expression_unmasked"] = pd.DataFrame(
        unmasked, index=obs.index, columns=adata.obsm[PROTEIN_KEY].columns)
    adata.uns["protein_masked_batches"] = list(masked_proteins)
    adata.uns["protein_masked_proteins"] = masked_proteins
    adata.uns["simulation"] = {
        "simulator": "cite_seq_reference", "world_seed": world_seed, "seed": seed,
        "n_genes": world.n_genes, "n_reference_proteins": world.n_proteins,
        "mean_library_size": mean_library_size,
    }
    return adata


def _check_reference_design(
    n_cells: int,
    n_batches: int,
    n_time_points: int,
    n_masked_batches: int,
    masked_fraction_range: tuple[float, float],
    mean_library_size: float,
) -> None:
    if n_batches % n_time_points:
        raise ValueError(
            f"n_batches={n_batches} is not a multiple of n_time_points={n_time_points}: "
            "each donor contributes one batch per time point; choose n_batches = "
            "n_donors × n_time_points."
        )
    if n_cells < n_batches:
        raise ValueError(f"n_cells={n_cells} is smaller than n_batches={n_batches}: every "
                         "batch needs at least one cell; raise n_cells.")
    if n_masked_batches >= n_batches:
        raise ValueError(
            f"n_masked_batches={n_masked_batches} must be smaller than n_batches="
            f"{n_batches}: at least one batch has to measure the whole panel."
        )
    low, high = masked_fraction_range
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"masked_fraction_range={masked_fraction_range!r} must satisfy "
                         "0 < low ≤ high ≤ 1 (shares of the panel).")
    if mean_library_size <= 0:
        raise ValueError(f"mean_library_size must be positive, got {mean_library_size!r}.")


def _mask_proteins(
    rng: np.random.Generator,
    protein: np.ndarray,
    batch_codes: np.ndarray,
    batches: Sequence[str],
    world: CiteSeqWorld,
    n_masked_batches: int,
    masked_fraction_range: tuple[float, float],
) -> dict[str, list[str]]:
    """Zero a random share of the panel in every cell of ``n_masked_batches`` random
    batches, in place in ``protein`` ``(n_cells, n_proteins)``; ``batch_codes``
    ``(n_cells,)``. Returns each masked batch (in batch order) -> its masked proteins."""
    masked_batches = sorted(rng.choice(len(batches), size=n_masked_batches, replace=False))
    masked_proteins: dict[str, list[str]] = {}
    for b in masked_batches:
        share = rng.uniform(*masked_fraction_range)
        n_missing = max(1, round(share * world.n_proteins))
        missing = np.sort(rng.choice(world.n_proteins, size=n_missing, replace=False))
        protein[np.ix_(batch_codes == b, missing)] = 0.0
        masked_proteins[batches[b]] = [world.protein_names[k] for k in missing]
    return masked_proteins


# --------------------------------------------------------------------------- query

# Log-fold changes of type frequencies per condition (healthy is the reference): MAIT
# cells fall and CD4 CTLs rise with COVID severity, monocytes and plasmablasts expand,
# naive T cells fall (lymphopenia). The paper saw CD4 CTLs peak in moderate donors; the
# default keeps both COVID groups above healthy and lets severe be highest.
DEFAULT_CONDITION_LOG_FOLD_CHANGES: dict[str, dict[str, float]] = {
    "healthy": {},
    "moderate": {"MAIT": -0.7, "CD4 CTL": 0.8, "CD14 Mono": 0.3, "CD16 Mono": 0.2,
                 "Plasmablast": 1.0, "CD4 Naive": -0.2, "CD8 Naive": -0.3},
    "severe": {"MAIT": -1.4, "CD4 CTL": 1.2, "CD14 Mono": 0.6, "CD16 Mono": 0.3,
               "Plasmablast": 1.5, "CD4 Naive": -0.4, "CD8 Naive": -0.6},
}


def _condition_frequencies(
    world: CiteSeqWorld, shifts: Mapping[str, float]
) -> np.ndarray:
    unknown = sorted(set(shifts) - set(world.cell_types))
    if unknown:
        raise ValueError(f"condition_log_fold_changes names unknown cell types {unknown}; "
                         f"the types are {list(world.cell_types)}.")
    log_fold = np.array([shifts.get(t, 0.0) for t in world.cell_types])
    frequencies = world.type_frequencies * np.exp(log_fold)
    return frequencies / frequencies.sum()


def _query_panel(world: CiteSeqWorld, n_proteins: int, rng: np.random.Generator) -> list[str]:
    """The query's antibodies: the lineage core, then random others from the reference
    panel, in a shuffled column order (readers must align proteins by name)."""
    core = [p for p in QUERY_CORE_PROTEINS if p in world.protein_names][:n_proteins]
    others = [p for p in world.protein_names if p not in core]
    extra = rng.choice(len(others), size=n_proteins - len(core), replace=False)
    panel = core + [others[k] for k in extra]
    return [panel[k] for k in rng.permutation(len(panel))]


def simulate_cite_seq_query(
    reference: ad.AnnData | None = None,
    n_cells: int = 3000,
    n_proteins: int = 35,
    n_donors: int = 9,
    seed: int = 1,
    *,
    world_seed: int = 0,
    n_genes: int = 1000,
    n_reference_proteins: int = 200,
    library_size_scale: float = 0.6,
    gene_shift_sd: float = 0.25,
    protein_background_shift: float = 0.5,
    condition_log_fold_changes: Mapping[str, Mapping[str, float]] | None = None,
    mean_library_size: float | None = None,
) -> ad.AnnData:
    """A Su et al.-like COVID-19 query drawn from the reference's world.

    The world (cell-type programs of genes and proteins) is the reference's: read from
    ``reference.uns["simulation"]`` when ``reference`` is given, otherwise built from
    ``world_seed``, ``n_genes`` and ``n_reference_proteins`` (the defaults match
    ``simulate_cite_seq_reference()``'s).

    Donors (one batch each, ``obs["batch"] == obs["donor"]``: ``HD01`` … healthy,
    ``PT01`` … patients) are assigned healthy / moderate / severe in turn; the condition
    shifts the type frequencies by ``condition_log_fold_changes`` (default
    ``DEFAULT_CONDITION_LOG_FOLD_CHANGES``), and each donor's composition varies around
    that. On top of the donor batch effects, the whole query carries a technical shift:
    library sizes × ``library_size_scale``, a gene-specific log-fold change with sd
    ``gene_shift_sd``, and a protein background log-mean shifted by
    ``protein_background_shift`` (plus a protein-specific part).

    ``obsm["protein_expression"]`` holds only the query's ``n_proteins`` antibodies (the 15
    lineage markers of ``QUERY_CORE_PROTEINS``, then random others from the reference
    panel), in a **shuffled** column order. ``obs``: ``batch``, ``donor``, ``condition``,
    ``cell_type`` (truth), ``compartment``, ``dataset`` = ``"query"``. Counts as in the
    reference (CSR float32 in ``X`` and ``layers["counts"]``).
    """
    n_cells = _check_int(n_cells, "n_cells", 1)
    n_donors = _check_int(n_donors, "n_donors", 1)
    n_proteins = _check_int(n_proteins, "n_proteins", 1)
    seed = _check_int(seed, "seed", 0)
    world_seed, n_genes, n_reference_proteins, mean_library_size = _reference_world_settings(
        reference, world_seed, n_genes, n_reference_proteins, mean_library_size)
    shifts = (DEFAULT_CONDITION_LOG_FOLD_CHANGES if condition_log_fold_changes is None
              else condition_log_fold_changes)
    _check_query_design(n_cells, n_donors, n_proteins, n_reference_proteins,
                        library_size_scale, mean_library_size, shifts)

    world = build_cite_seq_world(world_seed, n_genes, n_reference_proteins)
    rng = np.random.default_rng([seed, _QUERY_STREAM])
    panel = _query_panel(world, n_proteins, rng)
    panel_columns = np.array([world.protein_names.index(p) for p in panel])
    donors, conditions = _query_donors(n_donors)
    frequencies = {c: _condition_frequencies(world, shifts[c]) for c in CONDITIONS}

    # The technical shift common to the whole query (another lab, chemistry and panel).
    query_gene_shift = rng.normal(0.0, gene_shift_sd, world.n_genes)
    query_protein_shift = protein_background_shift + rng.normal(0.0, 0.3, world.n_proteins)
    sizes = _split_cells(rng, n_cells, n_donors)

    def draw_effects(d: int) -> _GroupEffects:
        return _draw_group_effects(rng, world, query_gene_shift, 0.15,
                                   library_scale=library_size_scale,
                                   protein_shift=query_protein_shift, protein_sd=0.15)

    rna_parts, protein_parts, type_parts = _sample_groups(
        world, rng, sizes, [frequencies[c] for c in conditions], draw_effects,
        mean_library_size)
    obs_parts = [
        pd.DataFrame({"batch": donor, "donor": donor, "condition": conditions[d],
                      "cell_type": np.asarray(world.cell_types)[type_parts[d]]})
        for d, donor in enumerate(donors)
    ]
    obs = _stacked_obs(obs_parts, world, "query", "query")
    obs["batch"] = _categorical(obs["batch"], donors)
    obs["donor"] = _categorical(obs["donor"], donors)
    obs["condition"] = _categorical(obs["condition"], CONDITIONS)

    protein = np.vstack([part[:, panel_columns] for part in protein_parts])
    adata = _to_anndata(world, np.vstack(rna_parts), protein, panel, obs)
    adata.uns["simulation"] = {
        "simulator": "cite_seq_query", "world_seed": world_seed, "seed": seed,
        "n_genes": world.n_genes, "n_reference_proteins": world.n_proteins,
        "mean_library_size": mean_library_size, "library_size_scale": library_size_scale,
    }
    return adata


def _reference_world_settings(
    reference: ad.AnnData | None,
    world_seed: int,
    n_genes: int,
    n_reference_proteins: int,
    mean_library_size: float | None,
) -> tuple[int, int, int, float]:
    """``(world_seed, n_genes, n_reference_proteins, mean_library_size)``: the reference's
    (from ``uns["simulation"]``) when given, else the arguments; an unset library size
    is the reference's, else 1,500."""
    if reference is not None:
        settings = reference.uns.get("simulation")
        if not isinstance(settings, Mapping) or "world_seed" not in settings:
            raise ValueError(
                "reference.uns['simulation'] is missing: pass an AnnData made by "
                "simulate_cite_seq_reference, or reference=None with world_seed, n_genes "
                "and n_reference_proteins."
            )
        world_seed = int(settings["world_seed"])
        n_genes = int(settings["n_genes"])
        n_reference_proteins = int(settings["n_reference_proteins"])
        if mean_library_size is None:
            mean_library_size = float(settings["mean_library_size"])
    mean_library_size = 1500.0 if mean_library_size is None else float(mean_library_size)
    return world_seed, n_genes, n_reference_proteins, mean_library_size


def _check_query_design(
    n_cells: int,
    n_donors: int,
    n_proteins: int,
    n_reference_proteins: int,
    library_size_scale: float,
    mean_library_size: float,
    shifts: Mapping[str, Mapping[str, float]],
) -> None:
    if n_cells < n_donors:
        raise ValueError(f"n_cells={n_cells} is smaller than n_donors={n_donors}: every "
                         "donor needs at least one cell; raise n_cells.")
    if n_proteins > n_reference_proteins:
        raise ValueError(
            f"n_proteins={n_proteins} exceeds the reference panel ({n_reference_proteins} "
            "proteins): the query panel is a subset of the reference panel."
        )
    if library_size_scale <= 0 or mean_library_size <= 0:
        raise ValueError("library_size_scale and mean_library_size must be positive, got "
                         f"{library_size_scale!r} and {mean_library_size!r}.")
    missing_conditions = [c for c in CONDITIONS if c not in shifts]
    if missing_conditions:
        raise ValueError(f"condition_log_fold_changes lacks {missing_conditions}: give a "
                         f"(possibly empty) mapping for each of {list(CONDITIONS)}.")


def _query_donors(n_donors: int) -> tuple[list[str], list[str]]:
    """Donor names and conditions, healthy / moderate / severe in turn: ``HD01`` ... for
    healthy donors, ``PT01`` ... for patients."""
    conditions = [CONDITIONS[i % len(CONDITIONS)] for i in range(n_donors)]
    donors, n_healthy, n_patients = [], 0, 0
    for condition in conditions:
        if condition == "healthy":
            n_healthy += 1
            donors.append(f"HD{n_healthy:02d}")
        else:
            n_patients += 1
            donors.append(f"PT{n_patients:02d}")
    return donors, conditions
