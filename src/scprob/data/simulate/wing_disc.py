"""Offline stand-in for the Drosophila wing-disc myoblast (AMP) atlas of the paper's Fig. 2.

``simulate_wing_disc`` draws UMI counts ``(n_cells, n_genes)`` for the four batches of the
real atlas (Everetts, Worley et al. 2021: two time points × two replicates), with each
cell's state, time point, cell-cycle phase and sex as known ground truth, so that a method
correcting for cell cycle and sex (55 nuisance genes) can be scored. Counts are negative
binomial with mean ``L[n] · softmax_g(eta[n, :])``, where ``eta`` sums a gene baseline and
the cell-state, time-point, cell-cycle, sex and batch programs. Batch sizes, time points,
cluster frequencies, sex ratios and the cell-cycle genes are real (embedded below); the
expression values are synthetic. The design, what is real and the rationale of each
constant: ``docs/simulators.md``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprob.data.simulate.common import pick_subset

# ---------------------------------------------------------------------------------------
# Real metadata of the AMP cells, embedded so that the simulator runs offline.
# Provenance: Everetts_Worley_et_al_Metadata.csv (repository
# HariharanLab/Everetts_Worley_Yasutomi, commit dfc2bbf786ce3a1dc8e2925b2c1792df7975484f,
# path TemporalCellAtlas/; shipped in ../shared/data/drosophila_wing_disc_amp/), rows with
# Cell_Type == "AMP" (19,885 of 26,989 cells), counted with
# pandas.crosstab(Annotated_Clusters, Batch_ID) and pandas.crosstab(Batch_ID, Cell_Sex).
# tests/test_simulate_wing_disc.py recomputes them from the CSV and checks they agree.
# ---------------------------------------------------------------------------------------

BATCHES: tuple[str, ...] = ("96H1", "96H2", "120H1", "120H2")
TIMEPOINTS: tuple[str, ...] = ("96H", "120H")
TIMEPOINT_OF_BATCH: dict[str, str] = {
    "96H1": "96H",
    "96H2": "96H",
    "120H1": "120H",
    "120H2": "120H",
}
CELL_STATES: tuple[str, ...] = ("DIR_1", *(f"IND_{i}" for i in range(1, 10)))
# Grouped_Domains of the metadata: DIR_1 is the direct, IND_* the indirect flight muscle group.
DOMAIN_OF_STATE: dict[str, str] = {
    state: ("Direct" if state.startswith("DIR") else "Indirect") for state in CELL_STATES
}

# AMP cells per (cluster, batch).
REAL_AMP_STATE_COUNTS: dict[str, dict[str, int]] = {
    "DIR_1": {"96H1": 562, "96H2": 538, "120H1": 631, "120H2": 550},
    "IND_1": {"96H1": 712, "96H2": 797, "120H1": 967, "120H2": 761},
    "IND_2": {"96H1": 782, "96H2": 886, "120H1": 658, "120H2": 507},
    "IND_3": {"96H1": 687, "96H2": 842, "120H1": 437, "120H2": 256},
    "IND_4": {"96H1": 598, "96H2": 541, "120H1": 628, "120H2": 393},
    "IND_5": {"96H1": 583, "96H2": 766, "120H1": 430, "120H2": 336},
    "IND_6": {"96H1": 360, "96H2": 619, "120H1": 514, "120H2": 571},
    "IND_7": {"96H1": 325, "96H2": 519, "120H1": 506, "120H2": 384},
    "IND_8": {"96H1": 275, "96H2": 321, "120H1": 294, "120H2": 230},
    "IND_9": {"96H1": 39, "96H2": 40, "120H1": 18, "120H2": 22},
}
# AMP cells per (batch, Cell_Sex). Batch 120H2 has markedly fewer males (28 % vs 41-48 %).
REAL_AMP_SEX_COUNTS: dict[str, dict[str, int]] = {
    "96H1": {"FEMALE": 2888, "MALE": 2035},
    "96H2": {"FEMALE": 3370, "MALE": 2499},
    "120H1": {"FEMALE": 2661, "MALE": 2422},
    "120H2": {"FEMALE": 2869, "MALE": 1141},
}


def _batch_fractions() -> dict[str, float]:
    per_batch = {b: sum(REAL_AMP_STATE_COUNTS[s][b] for s in CELL_STATES) for b in BATCHES}
    total = sum(per_batch.values())
    return {b: per_batch[b] / total for b in BATCHES}


def _state_fractions_by_timepoint() -> dict[str, dict[str, float]]:
    fractions: dict[str, dict[str, float]] = {}
    for timepoint in TIMEPOINTS:
        batches = [b for b in BATCHES if TIMEPOINT_OF_BATCH[b] == timepoint]
        counts = {s: sum(REAL_AMP_STATE_COUNTS[s][b] for b in batches) for s in CELL_STATES}
        total = sum(counts.values())
        fractions[timepoint] = {s: counts[s] / total for s in CELL_STATES}
    return fractions


# Derived proportions (what the simulator samples from).
BATCH_FRACTIONS: dict[str, float] = _batch_fractions()
STATE_FRACTIONS_BY_TIMEPOINT: dict[str, dict[str, float]] = _state_fractions_by_timepoint()
MALE_FRACTION_BY_BATCH: dict[str, float] = {
    b: REAL_AMP_SEX_COUNTS[b]["MALE"] / sum(REAL_AMP_SEX_COUNTS[b].values()) for b in BATCHES
}

# ---------------------------------------------------------------------------------------
# Genes.
# ---------------------------------------------------------------------------------------

# The 52 cell-cycle genes of the study, in the order of cell_cycle_genes.csv (same
# repository and commit, path scVI/; shipped in ../shared/data/drosophila_wing_disc_amp/).
CELL_CYCLE_GENES: tuple[str, ...] = (
    "PCNA", "dnk", "RnrS", "RnrL", "Claspin", "Mcm5", "Caf1-180", "RPA2", "HipHop", "stg",
    "Mcm6", "dup", "WRNexo", "Mcm7", "dpa", "CG10336", "Mcm3", "Mcm2", "RpA-70", "Chrac-14",
    "CG13690", "RPA3", "asf1", "CDC45L", "DNApol-alpha73", "CycE", "DNApol-alpha50", "Kmn1",
    "Lam", "Nph", "msd5", "msd1", "ctp", "Set", "scra", "Chrac-16", "ncd", "Ote", "pzg",
    "HDAC1", "nesd", "tum", "CG8173", "aurB", "feo", "pav", "CG6767", "sip2", "Det",
    "Cks30A", "CycB", "B52",
)  # fmt: skip
# The CSV has no phase column. It lists a replication block (PCNA ... DNApol-alpha50: MCMs,
# RNR, RPA, DNA polymerase alpha, CycE, Cdc45, dup/Cdt1) and then a mitotic block (Kmn1 ...
# B52: CycB, aurB, scra/anillin, pav, feo, tum, ncd ...). We read the first block as S phase
# and the second as G2/M, except stg (string/Cdc25, the trigger of mitosis), put in G2/M.
G2M_GENES: frozenset[str] = frozenset(("stg", *CELL_CYCLE_GENES[CELL_CYCLE_GENES.index("Kmn1") :]))

# Sex genes. The study called sex from lncRNA:roX1 and lncRNA:roX2, the RNA components of
# the male-only MSL dosage-compensation complex. The paper counts 55 nuisance genes, so one
# more sex gene was in its list; that list is not available offline. We take msl-2 (male-
# specific lethal 2), the subunit whose presence makes the MSL complex male-specific (Sxl
# blocks its splicing and translation in females) and which loads roX RNAs onto the male X:
# a third readout of the same male program, male-biased rather than on/off at the RNA level.
SEX_GENES: tuple[str, ...] = ("lncRNA:roX1", "lncRNA:roX2", "msl-2")

# Markers: each is a real Drosophila gene expressed in wing-disc AMPs (all are in the
# study's variable-gene list), placed where it marks a state or compartment here.
# vg-high/ct-low marks indirect (IFM) and ct-high/vg-low direct (DFM) flight muscle
# precursors (Sudarsan et al. 2001; Everetts, Worley et al. 2021); the other assignments are
# a simulation choice, not the real per-cluster markers.
COMPARTMENT_MARKERS: dict[str, tuple[str, float]] = {
    # gene: (Grouped_Domains where it is on, log-fold change there)
    "vg": ("Indirect", 2.5),
    "salm": ("Indirect", 1.5),  # spalt major: fibrillar (IFM) muscle identity
    "ct": ("Direct", 3.0),
    "Lim1": ("Direct", 2.0),
    "ems": ("Direct", 1.8),
    "toe": ("Direct", 1.5),
    "ap": ("Direct", 1.5),
}
SPATIAL_MARKERS: dict[str, float] = {
    # gene: centre of its expression domain on the IND arc (1 = IND_1 ... 9 = IND_9)
    "Nrt": 1.0, "Fas3": 1.5, "tsh": 2.0, "hth": 2.5, "kn": 3.0, "lms": 3.5, "ara": 4.0,
    "caup": 4.5, "mirr": 5.0, "Poxm": 5.5, "drl": 6.0, "Ama": 7.0, "htl": 8.0, "Fas2": 9.0,
}  # fmt: skip
PROGENITOR_MARKERS: tuple[str, ...] = ("twi", "zfh1", "Him")
DIFFERENTIATION_MARKERS: tuple[str, ...] = ("Mef2", "nau", "sls", "Act57B", "kirre", "rst", "hbs")
MARKER_GENES: tuple[str, ...] = (
    *COMPARTMENT_MARKERS,
    *SPATIAL_MARKERS,
    *PROGENITOR_MARKERS,
    *DIFFERENTIATION_MARKERS,
)
NUISANCE_GENES: tuple[str, ...] = (*CELL_CYCLE_GENES, *SEX_GENES)
MIN_BACKGROUND_GENES = 64
MIN_GENES = len(MARKER_GENES) + len(NUISANCE_GENES) + MIN_BACKGROUND_GENES

# Maturity of each state (0 = progenitor-like, 1 = closest to fusion competence).
STATE_MATURITY: dict[str, float] = {
    "DIR_1": 0.4, "IND_1": 0.1, "IND_2": 0.0, "IND_3": 0.2, "IND_4": 0.3, "IND_5": 0.2,
    "IND_6": 0.5, "IND_7": 0.6, "IND_8": 0.9, "IND_9": 1.0,
}  # fmt: skip

# ---------------------------------------------------------------------------------------
# Model constants (docs/simulators.md describes the model).
# ---------------------------------------------------------------------------------------

_MEDIAN_UMI_PER_2000_GENES = 4500.0
_LOG_LIBRARY_SD = 0.35
_BATCH_DEPTH_SD = 0.15
_CYCLE_DEPTH_SLOPE = 0.25
_THETA_RANGE = (0.5, 20.0)
_BACKGROUND_BASELINE_SD = 1.2
_BATCH_EFFECT_SD = 0.12

_STATE_LATENT_JITTER_SD = 0.2
_STATE_LOADING_SD = 0.7
_STATE_GENE_FRACTION = 0.15
_SPATIAL_MARKER_LFC = 2.0
_SPATIAL_MARKER_WIDTH = 1.0
_MATURATION_MARKER_LFC = 1.5
_DIFFERENTIATION_LFC_120H = 0.5

_TIME_GENE_FRACTION = 0.08
_TIME_LFC_SD = 0.4

_S_PEAK, _G2M_PEAK = 0.8 * np.pi, 1.4 * np.pi
_CYCLE_CONCENTRATION = 2.0
_CYCLE_GENE_LFC = (1.5, 3.0)
_CYCLE_BACKGROUND_FRACTION = 0.10
_CYCLE_BACKGROUND_LFC = (0.4, 1.0)
_CYCLE_BACKGROUND_DOWN_FRACTION = 0.15

_ROX_FEMALE_LFC = -7.0
_MSL2_MALE_LFC = 1.2
_SEX_BACKGROUND_FRACTION = 0.04
_SEX_BACKGROUND_LFC = (0.4, 0.8)

_SAMPLING_CHUNK_CELLS = 2048


# ---------------------------------------------------------------------------------------


def background_gene_names(n_background: int) -> list[str]:
    """Unique, deterministic Drosophila-style placeholders ``CG<number>`` (seed-free).

    The numbers are drawn once from a fixed generator, so every simulation with the same
    ``n_genes`` shares gene names whatever its ``seed``. A name says nothing about the real
    FlyBase gene of that number; names of the real cell-cycle genes are never reused.
    """
    taken = set(CELL_CYCLE_GENES) | set(MARKER_GENES) | set(SEX_GENES)
    numbers_pool = np.random.default_rng(20210101).permutation(np.arange(1000, 46000))
    names: list[str] = []
    for number in numbers_pool:
        name = f"CG{number}"
        if name not in taken:
            names.append(name)
            if len(names) == n_background:
                break
    return names


def _allocate(n_total: int, fractions: np.ndarray) -> np.ndarray:
    """Largest-remainder rounding of ``n_total * fractions`` to integers summing to n_total."""
    exact = n_total * fractions
    counts = np.floor(exact).astype(np.int64)
    shortfall = n_total - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:shortfall]] += 1
    return counts


def _cycle_programs(phase: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S activity, G2/M activity and cycle score, each ``(n_cells,)`` in [0, 1]."""
    s_activity = np.exp(_CYCLE_CONCENTRATION * (np.cos(phase - _S_PEAK) - 1.0))
    g2m_activity = np.exp(_CYCLE_CONCENTRATION * (np.cos(phase - _G2M_PEAK) - 1.0))
    cycle_score = 1.0 - (1.0 - s_activity) * (1.0 - g2m_activity)
    return s_activity, g2m_activity, cycle_score


def _state_centroids(rng: np.random.Generator) -> np.ndarray:
    """``(n_states, 6)`` coordinates: compartment, IND arc (cos, sin), maturity, 2 random."""
    centroids = np.zeros((len(CELL_STATES), 6))
    for k, state in enumerate(CELL_STATES):
        if DOMAIN_OF_STATE[state] == "Direct":
            centroids[k, 0] = 2.0
        else:
            arc_angle = np.pi * (int(state.split("_")[1]) - 1) / 8.0
            centroids[k, 1:3] = np.cos(arc_angle), np.sin(arc_angle)
        centroids[k, 3] = STATE_MATURITY[state]
    centroids[:, 4:] = rng.normal(0.0, 0.5, (len(CELL_STATES), 2))
    return centroids


def _marker_state_effects() -> np.ndarray:
    """``(n_states, n_markers)`` log-fold changes of the marker genes per state."""
    effects = np.zeros((len(CELL_STATES), len(MARKER_GENES)))
    column = {gene: j for j, gene in enumerate(MARKER_GENES)}
    for k, state in enumerate(CELL_STATES):
        domain = DOMAIN_OF_STATE[state]
        for gene, (on_domain, lfc) in COMPARTMENT_MARKERS.items():
            effects[k, column[gene]] = lfc if domain == on_domain else 0.0
        if domain == "Indirect":
            arc_position = float(state.split("_")[1])
            for gene, centre in SPATIAL_MARKERS.items():
                distance = (arc_position - centre) / _SPATIAL_MARKER_WIDTH
                effects[k, column[gene]] = _SPATIAL_MARKER_LFC * np.exp(-0.5 * distance**2)
        maturity = STATE_MATURITY[state]
        for gene in PROGENITOR_MARKERS:
            effects[k, column[gene]] = _MATURATION_MARKER_LFC * (1.0 - maturity)
        for gene in DIFFERENTIATION_MARKERS:
            effects[k, column[gene]] = _MATURATION_MARKER_LFC * maturity
    return effects


def _check_arguments(n_cells: int, n_genes: int, seed: int) -> None:
    for name, value in (("n_cells", n_cells), ("n_genes", n_genes), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer, got {value!r}.")
    if n_cells < len(BATCHES):
        raise ValueError(
            f"n_cells={n_cells} is too small: need at least {len(BATCHES)} cells, one per "
            f"batch {BATCHES}. Pass a larger n_cells."
        )
    if n_genes < MIN_GENES:
        raise ValueError(
            f"n_genes={n_genes} is too small: the simulator needs {len(MARKER_GENES)} marker, "
            f"{len(CELL_CYCLE_GENES)} cell-cycle and {len(SEX_GENES)} sex genes plus at least "
            f"{MIN_BACKGROUND_GENES} background genes, so n_genes >= {MIN_GENES}. "
            f"Pass n_genes >= {MIN_GENES}."
        )
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}.")


def simulate_wing_disc(n_cells: int = 8000, n_genes: int = 2000, seed: int = 0) -> ad.AnnData:
    """Simulate UMI counts shaped like the wing-disc AMP atlas (paper Fig. 2).

    Args:
        n_cells: number of cells, split over the four batches in the real proportions.
        n_genes: number of genes, at least ``MIN_GENES`` (150): 31 markers, 52 cell-cycle
            genes, 3 sex genes, and ``n_genes - 86`` background genes.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same data.

    Returns:
        AnnData with ``X`` and ``layers["counts"]``: ``(n_cells, n_genes)`` float32 CSR
        integer counts. ``obs``: ``batch``, ``timepoint``, ``cell_state``, ``domain``,
        ``sex`` (categoricals), ``cycle_phase`` (radians in [0, 2 pi)), ``s_score``,
        ``g2m_score``, ``cycle_score`` (in [0, 1]) and ``library_size`` (expected total
        UMIs). ``var``: ``gene_role`` in {"marker", "cell_cycle", "sex", "background"},
        ``cycle_program`` ("S", "G2M" or ""), ``nb_inverse_dispersion``. ``uns``:
        ``marker_genes`` (31), ``nuisance_genes`` (55), ``cell_cycle_genes`` (52),
        ``sex_genes`` (3).

    Raises:
        ValueError: if an argument is not an integer, ``n_cells < 4`` or
            ``n_genes < MIN_GENES``.
    """
    _check_arguments(n_cells, n_genes, seed)
    # One generator for everything: the helpers below draw in this order, which fixes the
    # data of a seed.
    rng = np.random.default_rng(seed)
    genes = _gene_layout(n_genes)
    cells = _draw_cells(rng, n_cells)
    baseline, theta = _gene_baselines(rng, genes)
    state_genes, state_loadings, cell_latent = _state_program(rng, genes, cells.state_code)
    time_lfc = _time_program(rng, genes)
    s_lfc, g2m_lfc, cycle_program = _cycle_program(rng, genes)
    male_lfc = _sex_program(rng, genes)
    batch_lfc, library_size = _batch_effects_and_depth(rng, cells, n_genes)
    programs = _GenePrograms(
        baseline=baseline, theta=theta, marker_effects=_marker_state_effects(),
        state_genes=state_genes, state_loadings=state_loadings, time_lfc=time_lfc,
        s_lfc=s_lfc, g2m_lfc=g2m_lfc, male_lfc=male_lfc, batch_lfc=batch_lfc,
    )  # fmt: skip
    counts = _sample_counts(rng, genes, cells, cell_latent, library_size, programs)
    return _to_anndata(counts, genes, cells, library_size, cycle_program, theta)


# ---------------------------------------------------------------------------------------
# The steps of simulate_wing_disc, in the order they draw random numbers.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GeneLayout:
    """Gene names ``(n_genes,)``: markers, cell-cycle genes, sex genes, then background."""

    names: list[str]
    role: np.ndarray  # (n_genes,) "marker", "cell_cycle", "sex" or "background"
    column: dict[str, int]  # gene name -> column

    def of_role(self, role: str) -> np.ndarray:
        """Columns ``(n_role,)`` of the genes with this role."""
        return np.flatnonzero(self.role == role)


@dataclass(frozen=True)
class _Cells:
    """Per-cell design, each ``(n_cells,)``: batch code, time point, state code, sex and
    the cell-cycle phase with its S, G2/M and overall cycle activities."""

    batch_code: np.ndarray
    timepoint: np.ndarray
    state_code: np.ndarray
    is_male: np.ndarray
    phase: np.ndarray
    s_activity: np.ndarray
    g2m_activity: np.ndarray
    cycle_score: np.ndarray


@dataclass(frozen=True)
class _GenePrograms:
    """Gene parameters, ``(n_genes,)`` unless said: baseline, NB inverse dispersion,
    marker effects ``(n_states, n_markers)``, latent loadings ``(6, n_state_genes)`` on
    ``state_genes``, time-point, S, G2/M and male log-fold changes, and batch effects
    ``(n_batches, n_genes)``."""

    baseline: np.ndarray
    theta: np.ndarray
    marker_effects: np.ndarray
    state_genes: np.ndarray
    state_loadings: np.ndarray
    time_lfc: np.ndarray
    s_lfc: np.ndarray
    g2m_lfc: np.ndarray
    male_lfc: np.ndarray
    batch_lfc: np.ndarray


def _gene_layout(n_genes: int) -> _GeneLayout:
    """Names and roles of ``n_genes`` genes (no random numbers)."""
    n_background = n_genes - len(MARKER_GENES) - len(NUISANCE_GENES)
    names = [*MARKER_GENES, *CELL_CYCLE_GENES, *SEX_GENES]
    names += background_gene_names(n_background)
    role = np.array(
        ["marker"] * len(MARKER_GENES)
        + ["cell_cycle"] * len(CELL_CYCLE_GENES)
        + ["sex"] * len(SEX_GENES)
        + ["background"] * n_background
    )
    return _GeneLayout(names=names, role=role, column={g: j for j, g in enumerate(names)})


def _draw_cells(rng: np.random.Generator, n_cells: int) -> _Cells:
    """Batches in the real proportions, then each cell's state (from its time point's
    frequencies), sex (its batch's male fraction) and cycle phase."""
    batch_sizes = _allocate(n_cells, np.array([BATCH_FRACTIONS[b] for b in BATCHES]))
    batch_code = np.repeat(np.arange(len(BATCHES)), batch_sizes)
    timepoint = np.array([TIMEPOINT_OF_BATCH[b] for b in BATCHES])[batch_code]
    state_code = np.empty(n_cells, dtype=np.int64)
    for tp in TIMEPOINTS:
        in_tp = np.flatnonzero(timepoint == tp)
        probabilities = np.array([STATE_FRACTIONS_BY_TIMEPOINT[tp][s] for s in CELL_STATES])
        state_code[in_tp] = rng.choice(len(CELL_STATES), size=in_tp.size, p=probabilities)
    male_probability = np.array([MALE_FRACTION_BY_BATCH[b] for b in BATCHES])[batch_code]
    is_male = rng.random(n_cells) < male_probability
    phase = rng.uniform(0.0, 2.0 * np.pi, n_cells)
    s_activity, g2m_activity, cycle_score = _cycle_programs(phase)
    return _Cells(
        batch_code=batch_code, timepoint=timepoint, state_code=state_code, is_male=is_male,
        phase=phase, s_activity=s_activity, g2m_activity=g2m_activity,
        cycle_score=cycle_score,
    )  # fmt: skip


def _gene_baselines(
    rng: np.random.Generator, genes: _GeneLayout
) -> tuple[np.ndarray, np.ndarray]:
    """Log baseline abundance and NB inverse dispersion, each ``(n_genes,)``."""
    column = genes.column
    marker_idx, cycle_idx = genes.of_role("marker"), genes.of_role("cell_cycle")
    baseline = rng.normal(0.0, _BACKGROUND_BASELINE_SD, len(genes.names))
    baseline[marker_idx] = rng.normal(0.0, 0.5, marker_idx.size)
    for gene in PROGENITOR_MARKERS:  # AMP identity genes, abundant in every AMP
        baseline[column[gene]] = 1.5
    baseline[cycle_idx] = rng.normal(0.5, 0.7, cycle_idx.size)
    baseline[column["PCNA"]] = 1.5
    # The roX genes are among the most abundant RNAs of a male cell; their baseline is
    # the female level, and the male program adds the difference back.
    baseline[column["lncRNA:roX1"]] = 3.5 + _ROX_FEMALE_LFC
    baseline[column["lncRNA:roX2"]] = 2.5 + _ROX_FEMALE_LFC
    baseline[column["msl-2"]] = -0.5
    theta = np.exp(
        rng.uniform(np.log(_THETA_RANGE[0]), np.log(_THETA_RANGE[1]), len(genes.names))
    )
    return baseline, theta


def _state_program(
    rng: np.random.Generator, genes: _GeneLayout, state_code: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background genes on the state latent: their columns ``(n_state_genes,)``, loadings
    ``(6, n_state_genes)`` and each cell's latent position ``(n_cells, 6)`` (its state's
    centroid plus jitter). The markers' state effects are ``_marker_state_effects``."""
    centroids = _state_centroids(rng)
    state_genes = pick_subset(rng, genes.of_role("background"), _STATE_GENE_FRACTION)
    loadings = rng.normal(0.0, _STATE_LOADING_SD, (centroids.shape[1], state_genes.size))
    cell_latent = centroids[state_code] + rng.normal(
        0.0, _STATE_LATENT_JITTER_SD, (state_code.size, centroids.shape[1])
    )
    return state_genes, loadings, cell_latent


def _time_program(rng: np.random.Generator, genes: _GeneLayout) -> np.ndarray:
    """Log-fold changes ``(n_genes,)`` at 120 h (the wanted signal)."""
    time_lfc = np.zeros(len(genes.names))
    time_genes = pick_subset(rng, genes.of_role("background"), _TIME_GENE_FRACTION)
    time_lfc[time_genes] = rng.normal(0.0, _TIME_LFC_SD, time_genes.size)
    for gene in DIFFERENTIATION_MARKERS:
        time_lfc[genes.column[gene]] = _DIFFERENTIATION_LFC_120H
    return time_lfc


def _cycle_program(
    rng: np.random.Generator, genes: _GeneLayout
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S and G2/M log-fold changes ``(n_genes,)`` each, and every gene's program label
    ``(n_genes,)`` ("S", "G2M" or ""): the cell-cycle genes strongly, a fraction of the
    background genes moderately."""
    n_genes = len(genes.names)
    s_lfc = np.zeros(n_genes)
    g2m_lfc = np.zeros(n_genes)
    cycle_program = np.full(n_genes, "", dtype=object)
    for j in genes.of_role("cell_cycle"):
        is_g2m = genes.names[j] in G2M_GENES
        (g2m_lfc if is_g2m else s_lfc)[j] = rng.uniform(*_CYCLE_GENE_LFC)
        cycle_program[j] = "G2M" if is_g2m else "S"
    background = pick_subset(rng, genes.of_role("background"), _CYCLE_BACKGROUND_FRACTION)
    magnitude = rng.uniform(*_CYCLE_BACKGROUND_LFC, background.size)
    sign = np.where(rng.random(background.size) < _CYCLE_BACKGROUND_DOWN_FRACTION, -1, 1)
    follows_g2m = rng.random(background.size) < 0.5
    g2m_lfc[background[follows_g2m]] = (sign * magnitude)[follows_g2m]
    s_lfc[background[~follows_g2m]] = (sign * magnitude)[~follows_g2m]
    cycle_program[background] = np.where(follows_g2m, "G2M", "S")
    return s_lfc, g2m_lfc, cycle_program


def _sex_program(rng: np.random.Generator, genes: _GeneLayout) -> np.ndarray:
    """Male log-fold changes ``(n_genes,)``: roX on, msl-2 up, some background genes."""
    column = genes.column
    male_lfc = np.zeros(len(genes.names))
    male_lfc[column["lncRNA:roX1"]] = -_ROX_FEMALE_LFC
    male_lfc[column["lncRNA:roX2"]] = -_ROX_FEMALE_LFC
    male_lfc[column["msl-2"]] = _MSL2_MALE_LFC
    background = pick_subset(rng, genes.of_role("background"), _SEX_BACKGROUND_FRACTION)
    male_lfc[background] = rng.uniform(*_SEX_BACKGROUND_LFC, background.size) * rng.choice(
        [-1.0, 1.0], background.size
    )
    return male_lfc


def _batch_effects_and_depth(
    rng: np.random.Generator, cells: _Cells, n_genes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Batch log-fold changes ``(n_batches, n_genes)`` and library sizes ``(n_cells,)``."""
    batch_lfc = rng.normal(0.0, _BATCH_EFFECT_SD, (len(BATCHES), n_genes))
    batch_depth = rng.normal(0.0, _BATCH_DEPTH_SD, len(BATCHES))
    median_umi = _MEDIAN_UMI_PER_2000_GENES * n_genes / 2000.0
    log_library = (
        np.log(median_umi)
        + batch_depth[cells.batch_code]
        + _CYCLE_DEPTH_SLOPE * (cells.cycle_score - 0.5)
        + rng.normal(0.0, _LOG_LIBRARY_SD, cells.batch_code.size)
    )
    return batch_lfc, np.exp(log_library)


def _sample_counts(
    rng: np.random.Generator,
    genes: _GeneLayout,
    cells: _Cells,
    cell_latent: np.ndarray,
    library_size: np.ndarray,
    programs: _GenePrograms,
) -> sp.csr_matrix:
    """Gamma-Poisson counts ``(n_cells, n_genes)`` CSR float32, ``_SAMPLING_CHUNK_CELLS``
    cells at a time so that the dense work stays small."""
    n_cells = cells.batch_code.size
    marker_idx = genes.of_role("marker")
    is_late = (cells.timepoint == "120H").astype(np.float64)
    blocks: list[sp.csr_matrix] = []
    for start in range(0, n_cells, _SAMPLING_CHUNK_CELLS):
        rows = slice(start, min(start + _SAMPLING_CHUNK_CELLS, n_cells))
        eta = programs.baseline + programs.batch_lfc[cells.batch_code[rows]]
        eta[:, marker_idx] += programs.marker_effects[cells.state_code[rows]]
        eta[:, programs.state_genes] += cell_latent[rows] @ programs.state_loadings
        eta += np.outer(is_late[rows], programs.time_lfc)
        eta += np.outer(cells.s_activity[rows], programs.s_lfc) + np.outer(
            cells.g2m_activity[rows], programs.g2m_lfc
        )
        eta += np.outer(cells.is_male[rows].astype(np.float64), programs.male_lfc)
        eta -= eta.max(axis=1, keepdims=True)
        proportions = np.exp(eta)
        proportions /= proportions.sum(axis=1, keepdims=True)
        mean = library_size[rows, None] * proportions
        rate = rng.gamma(shape=programs.theta, scale=mean / programs.theta)
        blocks.append(sp.csr_matrix(rng.poisson(rate).astype(np.float32)))
    return sp.vstack(blocks, format="csr", dtype=np.float32)


def _to_anndata(
    counts: sp.csr_matrix,
    genes: _GeneLayout,
    cells: _Cells,
    library_size: np.ndarray,
    cycle_program: np.ndarray,
    theta: np.ndarray,
) -> ad.AnnData:
    """The counts with the simulated truth in ``obs``, gene roles in ``var``, gene lists
    in ``uns`` (the layout ``simulate_wing_disc`` documents)."""
    batch = np.array(BATCHES)[cells.batch_code]
    states = np.array(CELL_STATES)[cells.state_code]
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(batch, categories=list(BATCHES)),
            "timepoint": pd.Categorical(cells.timepoint, categories=list(TIMEPOINTS)),
            "cell_state": pd.Categorical(states, categories=list(CELL_STATES)),
            "domain": pd.Categorical(
                [DOMAIN_OF_STATE[s] for s in states], categories=["Direct", "Indirect"]
            ),
            "sex": pd.Categorical(
                np.where(cells.is_male, "MALE", "FEMALE"), categories=["FEMALE", "MALE"]
            ),
            "cycle_phase": cells.phase,
            "s_score": cells.s_activity,
            "g2m_score": cells.g2m_activity,
            "cycle_score": cells.cycle_score,
            "library_size": library_size,
        },
        index=pd.Index([f"sim{i:06d}.{b}" for i, b in enumerate(batch)], name="cell"),
    )
    var = pd.DataFrame(
        {
            "gene_role": pd.Categorical(
                genes.role, categories=["marker", "cell_cycle", "sex", "background"]
            ),
            "cycle_program": cycle_program.astype(str),
            "nb_inverse_dispersion": theta,
        },
        index=pd.Index(genes.names, name="gene"),
    )
    adata = ad.AnnData(X=counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    adata.uns["marker_genes"] = list(MARKER_GENES)
    adata.uns["nuisance_genes"] = list(NUISANCE_GENES)
    adata.uns["cell_cycle_genes"] = list(CELL_CYCLE_GENES)
    adata.uns["sex_genes"] = list(SEX_GENES)
    return adata
