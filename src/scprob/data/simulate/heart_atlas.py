"""Offline stand-in for the Heart Cell Atlas of the paper's runtime study (Supp. Fig. 2).

``simulate_heart_atlas`` (in memory) and ``write_heart_atlas`` (streamed to an h5ad) draw
raw counts ``(n_cells, n_genes)``, CSR float32, with the study's covariates: categorical
``cell_source`` and ``donor``, continuous ``percent_mito``, ``percent_ribo`` (computed from
the counts) and eight standard-normal ``cont_cov_*``. Expression follows cell type, source,
donor and a within-type state, as in the atlas (Litviňuková et al. 2020), at any size and
without a dense ``n_cells × n_genes`` matrix. Cells come in RNG blocks of
``RNG_BLOCK_SIZE``, so a cell's data depend only on ``seed``, ``n_genes`` and its block: a
chunked file equals the in-memory simulation and a smaller simulation is a prefix of a
larger one. The design, what is real and the measured cost: ``docs/simulators.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit, logit

from scprob.data.checks import check_integer
from scprob.data.io import atomic_h5ad, write_csr_rows, write_h5ad_annotations
from scprob.data.simulate.common import pick_subset

# ---------------------------------------------------------------------------------------
# Atlas metadata (docs/simulators.md says what is exact and what is approximate).
# ---------------------------------------------------------------------------------------

ATLAS_N_CELLS = 486_134

CELL_TYPES: tuple[str, ...] = (
    "Ventricular_Cardiomyocyte", "Endothelial", "Fibroblast", "Pericytes", "Myeloid",
    "Atrial_Cardiomyocyte", "Lymphoid", "Smooth_muscle_cells", "Neuronal", "Adipocytes",
    "Mesothelial",
)  # fmt: skip
# Pooled proportions of the annotated atlas cells, rounded (approximate, see above).
ATLAS_CELL_TYPE_FRACTIONS: dict[str, float] = {
    "Ventricular_Cardiomyocyte": 0.257, "Endothelial": 0.207, "Fibroblast": 0.167,
    "Pericytes": 0.160, "Myeloid": 0.083, "Atrial_Cardiomyocyte": 0.048, "Lymphoid": 0.035,
    "Smooth_muscle_cells": 0.033, "Neuronal": 0.008, "Adipocytes": 0.008,
    "Mesothelial": 0.002,
}  # fmt: skip

CELL_SOURCES: tuple[str, ...] = ("Harvard-Nuclei", "Sanger-Nuclei", "Sanger-Cells", "Sanger-CD45")
CELL_SOURCE_FRACTIONS: dict[str, float] = {
    "Harvard-Nuclei": 0.33, "Sanger-Nuclei": 0.47, "Sanger-Cells": 0.12, "Sanger-CD45": 0.08,
}  # fmt: skip
NUCLEI_SOURCES: frozenset[str] = frozenset({"Harvard-Nuclei", "Sanger-Nuclei"})

DONORS: tuple[str, ...] = (
    "H2", "H3", "H4", "H5", "H6", "H7", "D1", "D2", "D3", "D4", "D5", "D6", "D7", "D11",
)  # fmt: skip
# Harvard donors gave nuclei only; all Sanger donors gave nuclei, seven of them also
# dissociated (and CD45-sorted) cells. Which seven is a simulation choice.
DONORS_OF_SOURCE: dict[str, tuple[str, ...]] = {
    "Harvard-Nuclei": ("H2", "H3", "H4", "H5", "H6", "H7"),
    "Sanger-Nuclei": ("D1", "D2", "D3", "D4", "D5", "D6", "D7", "D11"),
    "Sanger-Cells": ("D1", "D2", "D3", "D4", "D5", "D6", "D7"),
    "Sanger-CD45": ("D1", "D2", "D3", "D4", "D5", "D6", "D7"),
}
# Simulated donor sexes (not the real donors'): they switch XIST and the Y-linked genes.
FEMALE_DONORS: frozenset[str] = frozenset({"H2", "H3", "H5", "D1", "D3", "D5", "D6"})

# Covariates of the runtime study: 2 categorical, 2 measured + 8 random continuous.
CATEGORICAL_COVARIATES: tuple[str, ...] = ("cell_source", "donor")
N_RANDOM_COVARIATES = 8
RANDOM_COVARIATES: tuple[str, ...] = tuple(
    f"cont_cov_{i}" for i in range(1, N_RANDOM_COVARIATES + 1)
)
CONTINUOUS_COVARIATES: tuple[str, ...] = ("percent_mito", "percent_ribo", *RANDOM_COVARIATES)

# ---------------------------------------------------------------------------------------
# Genes.
# ---------------------------------------------------------------------------------------

# The 13 protein-coding genes of the mitochondrial genome, with rough relative abundances
# (typical ordering in 10x data: cytochrome oxidase and ATP6 highest; not measured here).
MT_GENE_WEIGHTS: dict[str, float] = {
    "MT-CO1": 18.0, "MT-CO3": 15.0, "MT-ATP6": 14.0, "MT-CO2": 13.0, "MT-CYB": 10.0,
    "MT-ND4": 9.0, "MT-ND1": 6.0, "MT-ND2": 5.0, "MT-ND3": 4.0, "MT-ND5": 3.0,
    "MT-ATP8": 1.5, "MT-ND4L": 1.0, "MT-ND6": 0.5,
}  # fmt: skip
MT_GENES: tuple[str, ...] = tuple(MT_GENE_WEIGHTS)
# 80 cytosolic ribosomal-protein genes (the names scanpy's RPS/RPL prefix rule catches).
RIBOSOMAL_GENES: tuple[str, ...] = (
    "RPL3", "RPL4", "RPL5", "RPL6", "RPL7", "RPL7A", "RPL8", "RPL9", "RPL10", "RPL10A",
    "RPL11", "RPL12", "RPL13", "RPL13A", "RPL14", "RPL15", "RPL17", "RPL18", "RPL18A",
    "RPL19", "RPL21", "RPL22", "RPL22L1", "RPL23", "RPL23A", "RPL24", "RPL26", "RPL27",
    "RPL27A", "RPL28", "RPL29", "RPL30", "RPL31", "RPL32", "RPL34", "RPL35", "RPL35A",
    "RPL36", "RPL36A", "RPL36AL", "RPL37", "RPL37A", "RPL38", "RPL39", "RPL41", "RPLP0",
    "RPLP1", "RPLP2", "RPSA", "RPS2", "RPS3", "RPS3A", "RPS4X", "RPS5", "RPS6", "RPS7",
    "RPS8", "RPS9", "RPS10", "RPS11", "RPS12", "RPS13", "RPS14", "RPS15", "RPS15A", "RPS16",
    "RPS17", "RPS18", "RPS19", "RPS20", "RPS21", "RPS23", "RPS24", "RPS25", "RPS26", "RPS27",
    "RPS27A", "RPS27L", "RPS28", "RPS29",
)  # fmt: skip
# Canonical markers of the atlas's cell types; a gene may mark several types.
MARKER_GENES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("TTN", "RYR2", "TNNT2", "ACTC1", "MYH6"),
        ("Atrial_Cardiomyocyte", "Ventricular_Cardiomyocyte"),
    ),
    **dict.fromkeys(("NPPA", "MYL7", "MYL4", "SLN", "PAM"), ("Atrial_Cardiomyocyte",)),
    **dict.fromkeys(("MYL2", "MYH7", "MYL3", "FHL2", "IRX4"), ("Ventricular_Cardiomyocyte",)),
    **dict.fromkeys(("DCN", "GSN", "LUM", "C7", "PDGFRA", "ABCA8"), ("Fibroblast",)),
    **dict.fromkeys(("VWF", "PECAM1", "CDH5", "EGFL7", "AQP1"), ("Endothelial",)),
    **dict.fromkeys(("RGS5", "ABCC9", "KCNJ8", "PDGFRB"), ("Pericytes",)),
    **dict.fromkeys(("MYH11", "ACTA2", "TAGLN", "CNN1"), ("Smooth_muscle_cells",)),
    "NOTCH3": ("Pericytes", "Smooth_muscle_cells"),
    "PTPRC": ("Myeloid", "Lymphoid"),
    **dict.fromkeys(("CD163", "C1QA", "LYVE1", "CD14", "MRC1"), ("Myeloid",)),
    **dict.fromkeys(("CD3E", "CD2", "IL7R", "NKG7", "MS4A1"), ("Lymphoid",)),
    **dict.fromkeys(("PLIN1", "ADIPOQ", "GPAM", "LEP"), ("Adipocytes",)),
    **dict.fromkeys(("NRXN1", "NRXN3", "PLP1", "S100B"), ("Neuronal",)),
    **dict.fromkeys(("MSLN", "UPK3B", "WT1", "ITLN1"), ("Mesothelial",)),
}
FEMALE_GENES: tuple[str, ...] = ("XIST",)
MALE_GENES: tuple[str, ...] = ("DDX3Y", "UTY", "KDM5D", "EIF1AY", "USP9Y", "ZFY")
# Nuclear-retained lncRNAs, much higher in single-nucleus than in single-cell data.
NUCLEAR_LNCRNAS: dict[str, tuple[float, float]] = {
    # gene: (baseline log abundance, log-fold change in nuclei)
    "MALAT1": (2.5, 2.0),
    "NEAT1": (1.0, 1.5),
}
NAMED_GENES: tuple[str, ...] = (
    *MT_GENES, *RIBOSOMAL_GENES, *MARKER_GENES, *FEMALE_GENES, *MALE_GENES, *NUCLEAR_LNCRNAS,
)  # fmt: skip
MIN_BACKGROUND_GENES = 100
MIN_GENES = len(NAMED_GENES) + MIN_BACKGROUND_GENES
BACKGROUND_PREFIX = "SIMGENE"

# ---------------------------------------------------------------------------------------
# Model constants (docs/simulators.md describes the model).
# ---------------------------------------------------------------------------------------

RNG_BLOCK_SIZE = 1024
_GENE_STREAM, _CELL_STREAM = 1, 2
_REFERENCE_N_GENES = 6000

# Median total UMIs over 6,000 genes per source (nuclei lower than dissociated cells).
_MEDIAN_LIBRARY_SIZE: dict[str, float] = {
    "Harvard-Nuclei": 1300.0, "Sanger-Nuclei": 1700.0, "Sanger-Cells": 4500.0,
    "Sanger-CD45": 3500.0,
}  # fmt: skip
_LOG_LIBRARY_SD = 0.5
_DONOR_DEPTH_SD = 0.15
_TYPE_DEPTH: dict[str, float] = {
    "Atrial_Cardiomyocyte": 0.3, "Ventricular_Cardiomyocyte": 0.3, "Myeloid": -0.25,
    "Lymphoid": -0.25,
}  # fmt: skip

# Median mitochondrial / ribosomal fraction of the counts per source, and type shifts on
# the logit scale.
_MEDIAN_MT_FRACTION: dict[str, float] = {
    "Harvard-Nuclei": 0.003, "Sanger-Nuclei": 0.005, "Sanger-Cells": 0.06,
    "Sanger-CD45": 0.03,
}  # fmt: skip
_MT_TYPE_LOGIT: dict[str, float] = {
    "Atrial_Cardiomyocyte": 1.0, "Ventricular_Cardiomyocyte": 1.0, "Myeloid": -0.3,
    "Lymphoid": -0.3,
}  # fmt: skip
_MT_CELL_SD, _MT_DONOR_SD = 0.6, 0.2
_MEDIAN_RIBO_FRACTION: dict[str, float] = {
    "Harvard-Nuclei": 0.008, "Sanger-Nuclei": 0.012, "Sanger-Cells": 0.08,
    "Sanger-CD45": 0.15,
}  # fmt: skip
_RIBO_TYPE_LOGIT: dict[str, float] = {
    "Atrial_Cardiomyocyte": -0.7, "Ventricular_Cardiomyocyte": -0.7, "Lymphoid": 0.6,
    "Myeloid": 0.2,
}  # fmt: skip
_RIBO_CELL_SD = 0.35
_MT_RIBO_WEIGHT_SD = 0.4

_THETA_RANGE = (0.5, 20.0)
_MT_RIBO_THETA_RANGE = (5.0, 50.0)
_BACKGROUND_BASELINE_SD = 1.4
_MARKER_BASELINE = (-1.5, 0.5)  # mean, sd
_MARKER_LFC = (3.0, 5.0)
_SEX_GENE_BASELINE = -6.0
_FEMALE_GENE_LFC, _MALE_GENE_LFC = 8.0, 6.0

# Shared gene modules: program -> {cell type: activity}.
_PROGRAMS: dict[str, dict[str, float]] = {
    "striated_muscle": {"Atrial_Cardiomyocyte": 1.0, "Ventricular_Cardiomyocyte": 1.0},
    "atrial": {"Atrial_Cardiomyocyte": 1.0},
    "ventricular": {"Ventricular_Cardiomyocyte": 1.0},
    "contractile": {"Smooth_muscle_cells": 1.0, "Pericytes": 0.5,
                    "Atrial_Cardiomyocyte": 0.3, "Ventricular_Cardiomyocyte": 0.3},
    "mural": {"Pericytes": 1.0, "Smooth_muscle_cells": 0.7},
    "vascular": {"Endothelial": 1.0, "Pericytes": 0.3, "Smooth_muscle_cells": 0.3},
    "endothelial": {"Endothelial": 1.0},
    "stromal_ecm": {"Fibroblast": 1.0, "Pericytes": 0.4, "Smooth_muscle_cells": 0.4,
                    "Mesothelial": 0.5, "Adipocytes": 0.4},
    "fibroblast": {"Fibroblast": 1.0},
    "immune": {"Myeloid": 1.0, "Lymphoid": 1.0},
    "myeloid": {"Myeloid": 1.0},
    "lymphoid": {"Lymphoid": 1.0},
    "adipocyte": {"Adipocytes": 1.0},
    "neural": {"Neuronal": 1.0},
    "mesothelial": {"Mesothelial": 1.0, "Endothelial": 0.2},
}  # fmt: skip
_PROGRAM_GENE_FRACTION = 0.02
_PROGRAM_LFC = (0.7, 2.5)
_TYPE_NOISE_FRACTION, _TYPE_NOISE_SD = 0.15, 0.4
_N_STATE_DIMS = 3
_STATE_GENE_FRACTION, _STATE_LOADING_SD = 0.06, 0.5
_SOURCE_EFFECT_SD = 0.25
_CYTOPLASMIC_FRACTION, _NUCLEI_CYTOPLASMIC_LFC = 0.08, -1.2
_DONOR_EFFECT_SD = 0.12
_DONOR_TYPE_TILT_SD = 0.3
_DONOR_WEIGHT_CONCENTRATION = 8.0

# How much more (or less) of each type a source captures than the pooled composition,
# before solving for the pooled composition (``_source_compositions``).
_IMMUNE = ("Myeloid", "Lymphoid")
_CARDIOMYOCYTES = ("Atrial_Cardiomyocyte", "Ventricular_Cardiomyocyte")
_SOURCE_ENRICHMENT: dict[str, dict[str, float]] = {
    "Harvard-Nuclei": {**dict.fromkeys(_CARDIOMYOCYTES, 1.6), **dict.fromkeys(_IMMUNE, 0.6)},
    "Sanger-Nuclei": {**dict.fromkeys(_CARDIOMYOCYTES, 1.6), **dict.fromkeys(_IMMUNE, 0.6)},
    "Sanger-Cells": {**dict.fromkeys(_CARDIOMYOCYTES, 0.05), **dict.fromkeys(_IMMUNE, 1.5),
                     "Endothelial": 1.3, "Adipocytes": 0.2, "Neuronal": 0.5},
    "Sanger-CD45": {**{t: 0.2 for t in CELL_TYPES}, **dict.fromkeys(_CARDIOMYOCYTES, 0.01),
                    **dict.fromkeys(_IMMUNE, 30.0)},
}  # fmt: skip


def _normalized(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array / array.sum()


def _source_compositions() -> np.ndarray:
    """``(n_sources, n_types)`` type probabilities per source whose pooled mixture (with
    ``CELL_SOURCE_FRACTIONS``) equals ``ATLAS_CELL_TYPE_FRACTIONS``.

    Each source's composition is ``base * enrichment`` renormalised; ``base`` is found by
    the fixed-point iteration ``base <- base * target / pooled(base)``.
    """
    target = _normalized([ATLAS_CELL_TYPE_FRACTIONS[t] for t in CELL_TYPES])
    source_weight = _normalized([CELL_SOURCE_FRACTIONS[s] for s in CELL_SOURCES])
    enrichment = np.array(
        [[_SOURCE_ENRICHMENT[s].get(t, 1.0) for t in CELL_TYPES] for s in CELL_SOURCES]
    )
    base = target.copy()
    for _ in range(500):
        composition = base * enrichment
        composition /= composition.sum(axis=1, keepdims=True)
        pooled = source_weight @ composition
        if np.max(np.abs(pooled - target)) < 1e-12:
            break
        base = base * target / pooled
        base /= base.sum()
    return composition


SOURCE_CELL_TYPE_FRACTIONS: np.ndarray = _source_compositions()

# ---------------------------------------------------------------------------------------
# Model parameters.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HeartModel:
    """Everything that is shared by all cells of one ``(n_genes, seed)``.

    Gene order: ``MT-`` genes, ribosomal genes, then the "other" genes (markers, sex genes,
    nuclear lncRNAs, background), whose parameters are indexed from 0 on their own.
    """

    gene_names: np.ndarray  # (n_genes,) str
    gene_group: np.ndarray  # (n_genes,) str
    theta: np.ndarray  # (n_genes,) NB inverse dispersion
    mt_weights: np.ndarray  # (13,) sums to 1
    ribo_weights: np.ndarray  # (80,) sums to 1
    other_baseline: np.ndarray  # (n_other,)
    type_profile: np.ndarray  # (n_types, n_other)
    state_loadings: np.ndarray  # (n_types, n_state_dims, n_other)
    source_effect: np.ndarray  # (n_sources, n_other)
    donor_effect: np.ndarray  # (n_donors, n_other)
    donor_cdf: np.ndarray  # (n_sources, n_donors) cumulative P(donor | source)
    type_cdf: np.ndarray  # (n_sources, n_donors, n_types) cumulative P(type | source, donor)
    log_library: np.ndarray  # (n_sources,)
    type_depth: np.ndarray  # (n_types,)
    donor_depth: np.ndarray  # (n_donors,)
    mt_logit: np.ndarray  # (n_sources, n_types, n_donors) summed logit terms
    ribo_logit: np.ndarray  # (n_sources, n_types)

    @property
    def n_genes(self) -> int:
        return int(self.gene_names.size)


def background_gene_names(n_background: int) -> list[str]:
    """``SIMGENE00001`` ...: synthetic, unique, seed-free names of the background genes."""
    width = max(5, len(str(n_background)))
    return [f"{BACKGROUND_PREFIX}{i:0{width}d}" for i in range(1, n_background + 1)]


def _cdf(probabilities: np.ndarray) -> np.ndarray:
    """Cumulative sums along the last axis, the last entry set to exactly 1."""
    cdf = np.cumsum(probabilities / probabilities.sum(axis=-1, keepdims=True), axis=-1)
    cdf[..., -1] = 1.0
    return cdf


@dataclass(frozen=True)
class _GeneLayout:
    """Gene names and groups ``(n_genes,)``, and the "other" genes (neither MT nor
    ribosomal) that the expression model indexes from 0: ``column`` maps a named one to
    its index there, ``background`` ``(n_background,)`` holds the background genes'."""

    names: np.ndarray
    group: np.ndarray
    column: dict[str, int]
    background: np.ndarray

    @property
    def n_other(self) -> int:
        return len(self.column)


def _gene_layout(n_genes: int) -> _GeneLayout:
    """``MT-`` genes, ribosomal genes, markers, sex genes, lncRNAs, then background."""
    n_background = n_genes - len(NAMED_GENES)
    other_names = [
        *MARKER_GENES, *FEMALE_GENES, *MALE_GENES, *NUCLEAR_LNCRNAS,
        *background_gene_names(n_background),
    ]  # fmt: skip
    n_other = len(other_names)
    group = np.array(
        ["mitochondrial"] * len(MT_GENES)
        + ["ribosomal"] * len(RIBOSOMAL_GENES)
        + ["marker"] * len(MARKER_GENES)
        + ["sex"] * (len(FEMALE_GENES) + len(MALE_GENES))
        + ["nuclear_lncrna"] * len(NUCLEAR_LNCRNAS)
        + ["background"] * n_background
    )
    return _GeneLayout(
        names=np.array([*MT_GENES, *RIBOSOMAL_GENES, *other_names]),
        group=group,
        column={name: j for j, name in enumerate(other_names)},
        background=np.arange(n_other - n_background, n_other),
    )


def _build_model(n_genes: int, seed: int) -> _HeartModel:
    """All gene and donor parameters of ``(n_genes, seed)``, drawn from one generator by
    the helpers below in a fixed order."""
    rng = np.random.default_rng([seed, _GENE_STREAM])
    genes = _gene_layout(n_genes)
    theta, mt_weights, ribo_weights = _dispersion_and_splits(rng, n_genes)
    baseline = _baselines(rng, genes)
    type_profile = _type_profiles(rng, genes)
    state_loadings = _state_loadings(rng, genes)
    source_effect = _source_effects(rng, genes)
    donor_effect = _donor_effects(rng, genes)
    donor_cdf, type_cdf = _sampling_cdfs(rng)
    log_library, type_depth, donor_depth = _library_depths(rng, n_genes)
    mt_logit, ribo_logit = _mt_and_ribo_logits(rng)
    return _HeartModel(
        gene_names=genes.names,
        gene_group=genes.group,
        theta=theta,
        mt_weights=mt_weights,
        ribo_weights=ribo_weights,
        other_baseline=baseline,
        type_profile=type_profile,
        state_loadings=state_loadings,
        source_effect=source_effect,
        donor_effect=donor_effect,
        donor_cdf=donor_cdf,
        type_cdf=type_cdf,
        log_library=log_library,
        type_depth=type_depth,
        donor_depth=donor_depth,
        mt_logit=mt_logit,
        ribo_logit=ribo_logit,
    )


def _dispersion_and_splits(
    rng: np.random.Generator, n_genes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NB inverse dispersion ``(n_genes,)`` and the fixed splits of the mitochondrial
    ``(13,)`` and ribosomal ``(80,)`` counts over their genes (each summing to 1)."""
    n_mt, n_ribo = len(MT_GENES), len(RIBOSOMAL_GENES)
    theta = np.exp(rng.uniform(*np.log(_THETA_RANGE), n_genes))
    theta[: n_mt + n_ribo] = np.exp(rng.uniform(*np.log(_MT_RIBO_THETA_RANGE), n_mt + n_ribo))
    mt_weights = _normalized(list(MT_GENE_WEIGHTS.values()))
    mt_weights = _normalized(mt_weights * np.exp(rng.normal(0, _MT_RIBO_WEIGHT_SD, n_mt)))
    ribo_weights = _normalized(np.exp(rng.normal(0.0, _MT_RIBO_WEIGHT_SD, n_ribo)))
    return theta, mt_weights, ribo_weights


def _baselines(rng: np.random.Generator, genes: _GeneLayout) -> np.ndarray:
    """Log baseline abundance ``(n_other,)``: low for markers and sex genes, the lncRNAs'
    fixed levels, random for the background."""
    baseline = rng.normal(0.0, _BACKGROUND_BASELINE_SD, genes.n_other)
    for gene in MARKER_GENES:
        baseline[genes.column[gene]] = rng.normal(*_MARKER_BASELINE)
    for gene in (*FEMALE_GENES, *MALE_GENES):
        baseline[genes.column[gene]] = _SEX_GENE_BASELINE
    for gene, (level, _) in NUCLEAR_LNCRNAS.items():
        baseline[genes.column[gene]] = level
    return baseline


def _type_profiles(rng: np.random.Generator, genes: _GeneLayout) -> np.ndarray:
    """Cell-type log-fold changes ``(n_types, n_other)``: shared programs, type noise,
    then markers."""
    type_index = {t: k for k, t in enumerate(CELL_TYPES)}
    type_profile = np.zeros((len(CELL_TYPES), genes.n_other))
    for activities in _PROGRAMS.values():
        program_genes = pick_subset(rng, genes.background, _PROGRAM_GENE_FRACTION)
        lfc = rng.uniform(*_PROGRAM_LFC, program_genes.size)
        for cell_type, activity in activities.items():
            type_profile[type_index[cell_type], program_genes] += activity * lfc
    for k in range(len(CELL_TYPES)):
        noisy = pick_subset(rng, genes.background, _TYPE_NOISE_FRACTION)
        type_profile[k, noisy] += rng.normal(0.0, _TYPE_NOISE_SD, noisy.size)
    for gene, marked_types in MARKER_GENES.items():
        lfc = rng.uniform(*_MARKER_LFC)
        for cell_type in marked_types:
            type_profile[type_index[cell_type], genes.column[gene]] += lfc
    return type_profile


def _state_loadings(rng: np.random.Generator, genes: _GeneLayout) -> np.ndarray:
    """Within-type continuous state loadings ``(n_types, n_state_dims, n_other)``, each
    type on its own random background genes."""
    loadings = np.zeros((len(CELL_TYPES), _N_STATE_DIMS, genes.n_other))
    for k in range(len(CELL_TYPES)):
        state_genes = pick_subset(rng, genes.background, _STATE_GENE_FRACTION)
        loadings[k][:, state_genes] = rng.normal(
            0.0, _STATE_LOADING_SD, (_N_STATE_DIMS, state_genes.size)
        )
    return loadings


def _source_effects(rng: np.random.Generator, genes: _GeneLayout) -> np.ndarray:
    """Log-fold changes per source ``(n_sources, n_other)``; nuclei lose cytoplasmic
    transcripts and gain the nuclear lncRNAs."""
    source_effect = rng.normal(0.0, _SOURCE_EFFECT_SD, (len(CELL_SOURCES), genes.n_other))
    cytoplasmic = pick_subset(rng, genes.background, _CYTOPLASMIC_FRACTION)
    for s, source in enumerate(CELL_SOURCES):
        if source in NUCLEI_SOURCES:
            source_effect[s, cytoplasmic] += _NUCLEI_CYTOPLASMIC_LFC
            for gene, (_, nuclei_lfc) in NUCLEAR_LNCRNAS.items():
                source_effect[s, genes.column[gene]] += nuclei_lfc
    return source_effect


def _donor_effects(rng: np.random.Generator, genes: _GeneLayout) -> np.ndarray:
    """Log-fold changes per donor ``(n_donors, n_other)``, sex genes by the donor's sex."""
    donor_effect = rng.normal(0.0, _DONOR_EFFECT_SD, (len(DONORS), genes.n_other))
    for d, donor in enumerate(DONORS):
        if donor in FEMALE_DONORS:
            donor_effect[d, [genes.column[g] for g in FEMALE_GENES]] += _FEMALE_GENE_LFC
        else:
            donor_effect[d, [genes.column[g] for g in MALE_GENES]] += _MALE_GENE_LFC
    return donor_effect


def _sampling_cdfs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Who is sampled: cumulative P(donor | source) ``(n_sources, n_donors)`` and
    P(type | source, donor) ``(n_sources, n_donors, n_types)``."""
    donor_weights = np.zeros((len(CELL_SOURCES), len(DONORS)))
    for s, source in enumerate(CELL_SOURCES):
        eligible = [DONORS.index(d) for d in DONORS_OF_SOURCE[source]]
        donor_weights[s, eligible] = rng.dirichlet(
            np.full(len(eligible), _DONOR_WEIGHT_CONCENTRATION)
        )
    tilt = np.exp(rng.normal(0.0, _DONOR_TYPE_TILT_SD, (len(DONORS), len(CELL_TYPES))))
    type_probabilities = SOURCE_CELL_TYPE_FRACTIONS[:, None, :] * tilt[None, :, :]
    return _cdf(donor_weights), _cdf(type_probabilities)


def _library_depths(
    rng: np.random.Generator, n_genes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log median library size per source ``(n_sources,)`` (scaled with ``n_genes``), and
    log depth shifts per type ``(n_types,)`` and per donor ``(n_donors,)``."""
    depth_scale = n_genes / _REFERENCE_N_GENES
    log_library = np.log([_MEDIAN_LIBRARY_SIZE[s] * depth_scale for s in CELL_SOURCES])
    type_depth = np.array([_TYPE_DEPTH.get(t, 0.0) for t in CELL_TYPES])
    donor_depth = rng.normal(0.0, _DONOR_DEPTH_SD, len(DONORS))
    return log_library, type_depth, donor_depth


def _mt_and_ribo_logits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the mitochondrial fraction ``(n_sources, n_types, n_donors)`` and of the
    ribosomal fraction ``(n_sources, n_types)``, before per-cell noise."""
    mt_source = logit([_MEDIAN_MT_FRACTION[s] for s in CELL_SOURCES])
    mt_type = np.array([_MT_TYPE_LOGIT.get(t, 0.0) for t in CELL_TYPES])
    mt_donor = rng.normal(0.0, _MT_DONOR_SD, len(DONORS))
    mt_logit = mt_source[:, None, None] + mt_type[None, :, None] + mt_donor[None, None, :]
    ribo_source = logit([_MEDIAN_RIBO_FRACTION[s] for s in CELL_SOURCES])
    ribo_type = np.array([_RIBO_TYPE_LOGIT.get(t, 0.0) for t in CELL_TYPES])
    return mt_logit, ribo_source[:, None] + ribo_type[None, :]


# ---------------------------------------------------------------------------------------
# Cells, one RNG block at a time.
# ---------------------------------------------------------------------------------------


@dataclass
class _BlockObs:
    """The per-cell annotations of one RNG block of ``n_rows`` cells."""

    source: np.ndarray  # (n_rows,) int codes into CELL_SOURCES
    donor: np.ndarray  # (n_rows,) int codes into DONORS
    cell_type: np.ndarray  # (n_rows,) int codes into CELL_TYPES
    percent_mito: np.ndarray  # (n_rows,) float64 in [0, 100]
    percent_ribo: np.ndarray  # (n_rows,) float64 in [0, 100]
    random_covariates: np.ndarray  # (n_rows, 8) float64


@dataclass
class _Block:
    """The cells of one RNG block: counts ``(n_rows, n_genes)`` CSR float32 and obs."""

    counts: sp.csr_matrix
    obs: _BlockObs


_SOURCE_CDF_ROW = _cdf(_normalized([CELL_SOURCE_FRACTIONS[s] for s in CELL_SOURCES]))


def _categorical_draw(cdf_rows: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Index of the first cdf entry above each uniform; ``cdf_rows`` ``(n, k)``."""
    return np.minimum((uniforms[:, None] >= cdf_rows).sum(axis=1), cdf_rows.shape[1] - 1)


def _simulate_block(model: _HeartModel, seed: int, block_index: int, n_rows: int) -> _Block:
    """Cells ``block_index * RNG_BLOCK_SIZE`` ... ``+ n_rows - 1`` (``n_rows <= block``).

    The metadata and expected counts are computed for the full block, whatever
    ``n_rows``, so that a partial last block gives the same first rows as a full one.
    """
    rng = np.random.default_rng([seed, _CELL_STREAM, block_index])
    size = RNG_BLOCK_SIZE
    n_mt, n_ribo = model.mt_weights.size, model.ribo_weights.size

    # ---- metadata of the whole block, in a fixed order of draws -----------------------------
    uniforms = rng.random((size, 3))
    source = _categorical_draw(_source_cdf(size), uniforms[:, 0])
    donor = _categorical_draw(model.donor_cdf[source], uniforms[:, 1])
    cell_type = _categorical_draw(model.type_cdf[source, donor], uniforms[:, 2])
    state = rng.standard_normal((size, _N_STATE_DIMS))
    library_noise, mt_noise, ribo_noise = rng.standard_normal((3, size))
    random_covariates = rng.standard_normal((size, N_RANDOM_COVARIATES))

    # ---- expected composition of the non-MT, non-ribosomal genes ----------------------------
    eta = model.type_profile[cell_type]  # fancy indexing: a fresh (size, n_other) array
    eta += model.other_baseline
    eta += model.source_effect[source]
    eta += model.donor_effect[donor]
    for k in np.unique(cell_type):
        members = np.flatnonzero(cell_type == k)
        eta[members] += state[members] @ model.state_loadings[k]
    eta -= eta.max(axis=1, keepdims=True)
    np.exp(eta, out=eta)
    eta /= eta.sum(axis=1, keepdims=True)

    mt_fraction = expit(model.mt_logit[source, cell_type, donor] + _MT_CELL_SD * mt_noise)
    ribo_fraction = expit(model.ribo_logit[source, cell_type] + _RIBO_CELL_SD * ribo_noise)
    library = np.exp(
        model.log_library[source]
        + model.type_depth[cell_type]
        + model.donor_depth[donor]
        + _LOG_LIBRARY_SD * library_noise
    )

    # ---- counts of the first n_rows cells, drawn row by row ---------------------------------
    rows = slice(0, n_rows)
    mean = np.empty((n_rows, model.n_genes))
    mean[:, :n_mt] = (library * mt_fraction)[rows, None] * model.mt_weights
    mean[:, n_mt : n_mt + n_ribo] = (library * ribo_fraction)[rows, None] * model.ribo_weights
    rest = library * (1.0 - mt_fraction - ribo_fraction)
    np.multiply(rest[rows, None], eta[rows], out=mean[:, n_mt + n_ribo :])
    del eta
    success = model.theta / (model.theta + mean)
    del mean
    counts = rng.negative_binomial(model.theta, success)
    del success

    total = counts.sum(axis=1).astype(np.float64)
    mt_counts = counts[:, :n_mt].sum(axis=1)
    ribo_counts = counts[:, n_mt : n_mt + n_ribo].sum(axis=1)
    obs = _BlockObs(
        source=source[rows],
        donor=donor[rows],
        cell_type=cell_type[rows],
        percent_mito=_percent(mt_counts, total),
        percent_ribo=_percent(ribo_counts, total),
        random_covariates=random_covariates[rows],
    )
    return _Block(counts=sp.csr_matrix(counts, dtype=np.float32), obs=obs)


def _source_cdf(size: int) -> np.ndarray:
    return np.broadcast_to(_SOURCE_CDF_ROW, (size, _SOURCE_CDF_ROW.size))


def _percent(part: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``100 * part / total`` as float64, 0 where ``total`` is 0."""
    return np.divide(
        100.0 * part.astype(np.float64), total, out=np.zeros(total.shape), where=total > 0
    )


def _iter_blocks(model: _HeartModel, n_cells: int, seed: int) -> Iterator[_Block]:
    for block_index, start in enumerate(range(0, n_cells, RNG_BLOCK_SIZE)):
        yield _simulate_block(
            model, seed, block_index, min(RNG_BLOCK_SIZE, n_cells - start)
        )


def _obs_frame(blocks: Sequence[_BlockObs], n_cells: int) -> pd.DataFrame:
    """The ``obs`` table of the cells of ``blocks`` (in order)."""

    def stacked(attribute: str) -> np.ndarray:
        return np.concatenate([getattr(block, attribute) for block in blocks])

    obs = pd.DataFrame(index=pd.Index(cell_names(n_cells), name="cell"))
    obs["cell_type"] = pd.Categorical.from_codes(stacked("cell_type"), CELL_TYPES)
    obs["cell_source"] = pd.Categorical.from_codes(stacked("source"), CELL_SOURCES)
    obs["donor"] = pd.Categorical.from_codes(stacked("donor"), DONORS)
    obs["percent_mito"] = stacked("percent_mito")
    obs["percent_ribo"] = stacked("percent_ribo")
    covariates = np.concatenate([block.random_covariates for block in blocks])
    for j, name in enumerate(RANDOM_COVARIATES):
        obs[name] = covariates[:, j]
    return obs


def cell_names(n_cells: int) -> list[str]:
    """``cell_000000`` ...: deterministic, unique cell names (a prefix for fewer cells)."""
    width = max(6, len(str(n_cells - 1)))
    return [f"cell_{i:0{width}d}" for i in range(n_cells)]


def _var_frame(model: _HeartModel) -> pd.DataFrame:
    var = pd.DataFrame(index=pd.Index(model.gene_names, name="gene"))
    var["gene_group"] = pd.Categorical(model.gene_group)
    var["mt"] = model.gene_group == "mitochondrial"
    var["ribo"] = model.gene_group == "ribosomal"
    return var


def _uns(n_genes: int, seed: int) -> dict[str, Any]:
    return {
        "simulation": {
            "simulator": "scprob.data.simulate.heart_atlas",
            "seed": int(seed),
            "n_genes": int(n_genes),
            "rng_block_size": RNG_BLOCK_SIZE,
            "count_dtype": "float32",
        }
    }


def _check_simulation_arguments(n_cells: int, n_genes: int, seed: int) -> None:
    check_integer("n_cells", n_cells, 1)
    check_integer("seed", seed, 0)
    check_integer("n_genes", n_genes, 1)
    if n_genes < MIN_GENES:
        raise ValueError(
            f"n_genes={n_genes} is too small: the simulator needs {len(NAMED_GENES)} named "
            f"genes ({len(MT_GENES)} MT-, {len(RIBOSOMAL_GENES)} ribosomal, markers, sex "
            f"and nuclear lncRNA genes) plus at least {MIN_BACKGROUND_GENES} background "
            f"genes; pass n_genes >= {MIN_GENES}."
        )


# ---------------------------------------------------------------------------------------
# Public API: simulate in memory, or write in chunks.
# ---------------------------------------------------------------------------------------


def simulate_heart_atlas(n_cells: int, n_genes: int = 6000, seed: int = 0) -> ad.AnnData:
    """Simulate Heart-Cell-Atlas-like counts in memory (small sizes).

    Args:
        n_cells: number of cells (any positive size; memory grows with it, so write large
            data sets with ``write_heart_atlas``).
        n_genes: number of genes, at least ``MIN_GENES``.
        seed: non-negative seed; the same ``(n_cells, n_genes, seed)`` gives the same data
            as ``write_heart_atlas`` with any ``chunk_size``.

    Returns:
        AnnData with ``X`` ``(n_cells, n_genes)`` CSR float32 integer counts; ``obs``:
        ``cell_type``, ``cell_source``, ``donor`` (categoricals with all levels),
        ``percent_mito``, ``percent_ribo`` (float64 in [0, 100]) and ``cont_cov_1`` ...
        ``cont_cov_8`` (float64, standard normal); ``var``: ``gene_group``, ``mt``, ``ribo``;
        ``uns["simulation"]``: the generator's settings.

    Raises:
        ValueError: if an argument is not an integer or out of range.
    """
    _check_simulation_arguments(n_cells, n_genes, seed)
    model = _build_model(n_genes, seed)
    blocks = list(_iter_blocks(model, n_cells, seed))
    counts = sp.vstack([block.counts for block in blocks], format="csr", dtype=np.float32)
    obs = _obs_frame([block.obs for block in blocks], n_cells)
    return ad.AnnData(X=counts, obs=obs, var=_var_frame(model), uns=_uns(n_genes, seed))


def write_heart_atlas(
    path: str | Path,
    n_cells: int,
    n_genes: int = 6000,
    seed: int = 0,
    chunk_size: int = 20000,
) -> None:
    """Simulate like ``simulate_heart_atlas`` and write an h5ad, streaming the counts.

    Cells are simulated in blocks of ``RNG_BLOCK_SIZE``; whenever ``chunk_size`` cells
    are pending their CSR rows are appended to ``X`` in the file, so memory is that of one
    block's dense work (a few ``RNG_BLOCK_SIZE × n_genes`` float64 arrays, ~50 MB each at
    6,000 genes) plus one chunk of CSR rows, never the whole matrix. The file is written
    under a temporary name in the same folder and renamed at the end, so an interrupted
    run leaves no partial ``path``. It reads back with ``anndata.read_h5ad`` (``X`` CSR
    float32, int64 ``indptr``) and is equal, for the same ``seed``, to
    ``simulate_heart_atlas(n_cells, n_genes, seed)`` whatever ``chunk_size``.

    Raises:
        ValueError: if an argument is not an integer or out of range.
    """
    _check_simulation_arguments(n_cells, n_genes, seed)
    check_integer("chunk_size", chunk_size, 1)
    if Path(path).is_dir():
        raise ValueError(f"{str(path)!r} is a folder; pass the path of the h5ad file to write.")
    model = _build_model(n_genes, seed)
    block_obs: list[_BlockObs] = []  # the counts are written and dropped, obs kept

    def counts_of_blocks() -> Iterator[sp.csr_matrix]:
        for block in _iter_blocks(model, n_cells, seed):
            block_obs.append(block.obs)
            yield block.counts

    with atomic_h5ad(path) as handle:
        write_csr_rows(handle, counts_of_blocks(), n_genes, chunk_size)
        write_h5ad_annotations(
            handle,
            obs=_obs_frame(block_obs, n_cells),
            var=_var_frame(model),
            uns=_uns(n_genes, seed),
        )
