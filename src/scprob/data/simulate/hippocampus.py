"""Offline stand-in for the scvi-tools paper's Stereoscope study: a mouse-hippocampus-like
single-cell reference and Visium-like spots made of held-out cells of the same world.

``simulate_hippocampus`` returns ``(sc_adata, st_adata)``:

* ``sc_adata`` ``(n_cells, n_genes)``: integer UMI counts (CSR float32), the label in
  ``obs["cell_type"]`` (15 types with unequal, hippocampus-like frequencies, rare ones
  included) and each cell's library in ``obs["n_counts"]``;
* ``st_adata`` ``(n_spots, n_genes)``: each spot sums the counts of 5–15 *other* cells of
  the same world, re-drawn through a gene-wise log-normal platform effect (Poisson around
  ``f_g`` × the summed counts). The spot's cell-type mixture follows a Dirichlet whose
  mean varies smoothly over a 2-D layout of anatomical regions. Coordinates are in
  ``obsm["spatial"]`` ``(n_spots, 2)`` and ``obs["x"]``, ``obs["y"]``; the dominant region
  in ``obs["region"]``, the number of cells in ``obs["n_cells"]``; the true proportions
  (fractions of the spot's cells, a DataFrame spots × types, rows summing to 1) in
  ``obsm["true_proportions"]``; the platform effect ``f_g`` in ``var["platform_effect"]``
  and each type's expected expression frequencies (genes × types) in
  ``sc_adata.varm["true_frequencies"]``.

Seeded and deterministic. Design and constants: ``docs/simulators.md``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

# Cell types (named as in the spacexr hippocampus reference) and their share of cells: a
# simulation choice shaped like a dissociated hippocampus (granule and pyramidal neurons
# and oligodendrocytes abundant; Cajal-Retzius, ependymal and choroid cells rare).
CELL_TYPE_FRACTIONS: dict[str, float] = {
    "Denate": 0.20, "CA1": 0.12, "CA3": 0.08, "Oligodendrocyte": 0.13, "Astrocyte": 0.10,
    "Interneuron": 0.06, "Microglia_Macrophages": 0.06, "Endothelial_Stalk": 0.05,
    "Polydendrocyte": 0.04, "Entorihinal": 0.05, "Neurogenesis": 0.03, "Mural": 0.03,
    "Choroid": 0.02, "Ependymal": 0.015, "Cajal_Retzius": 0.005,
}  # fmt: skip
CELL_TYPES: tuple[str, ...] = tuple(CELL_TYPE_FRACTIONS)
# Two known marker genes per type (real mouse symbols; the effect sizes are simulated).
MARKERS: dict[str, tuple[str, str]] = {
    "Denate": ("Prox1", "C1ql2"), "CA1": ("Wfs1", "Fibcd1"), "CA3": ("Bok", "Nrip3"),
    "Oligodendrocyte": ("Mbp", "Plp1"), "Astrocyte": ("Gfap", "Aqp4"),
    "Interneuron": ("Gad1", "Gad2"), "Microglia_Macrophages": ("Cx3cr1", "C1qa"),
    "Endothelial_Stalk": ("Cldn5", "Flt1"), "Polydendrocyte": ("Pdgfra", "Cspg4"),
    "Entorihinal": ("Lamp5", "Cux2"), "Neurogenesis": ("Dcx", "Sox11"),
    "Mural": ("Vtn", "Acta2"), "Choroid": ("Ttr", "Kl"), "Ependymal": ("Foxj1", "Ccdc153"),
    "Cajal_Retzius": ("Reln", "Lhx1"),
}  # fmt: skip
# Shared programs: the cell classes whose members share a block of genes.
CLASSES: dict[str, tuple[str, ...]] = {
    "neuron": ("Denate", "CA1", "CA3", "Interneuron", "Entorihinal", "Neurogenesis",
               "Cajal_Retzius"),
    "glia": ("Oligodendrocyte", "Astrocyte", "Polydendrocyte", "Ependymal"),
    "vascular": ("Endothelial_Stalk", "Mural", "Choroid"),
}
# Regions of the layout (centre in the unit square, width) and the types each enriches.
REGIONS: dict[str, tuple[tuple[float, float], float, tuple[str, ...]]] = {
    "dentate_gyrus": ((0.65, 0.35), 0.18, ("Denate", "Neurogenesis", "Interneuron")),
    "CA1_field": ((0.25, 0.70), 0.18, ("CA1", "Interneuron", "Astrocyte")),
    "CA3_field": ((0.75, 0.75), 0.15, ("CA3", "Interneuron", "Cajal_Retzius")),
    "white_matter": ((0.20, 0.20), 0.20, ("Oligodendrocyte", "Polydendrocyte",
                                          "Microglia_Macrophages")),
    "ventricle": ((0.95, 0.05), 0.12, ("Choroid", "Ependymal", "Endothelial_Stalk",
                                       "Mural")),
    "cortex": ((0.05, 0.95), 0.18, ("Entorihinal", "Astrocyte", "Endothelial_Stalk")),
}

_MEDIAN_LIBRARY_PER_500_GENES = 1500.0  # UMIs of a cell at 500 genes, scaled with n_genes
_LOG_LIBRARY_SD = 0.4
_BASELINE_SD = 1.2  # log-frequency spread of the genes
_CLASS_GENE_FRACTION, _CLASS_LFC = 0.10, (0.8, 2.0)
_TYPE_GENE_FRACTION, _TYPE_LFC_SD = 0.12, 0.9
_MARKER_LFC = (3.0, 4.5)
_THETA_RANGE = (1.0, 20.0)  # inverse dispersion, log-uniform
_REGION_LFC = 3.0  # log-enrichment of a region's types at its centre
_UNIFORM_SHARE = 0.3  # of each spot's mean mixture spread evenly: every type is present
_DIRICHLET_CONCENTRATION = 30.0
_PLATFORM_SD = 0.4  # sd of log f_g


def simulate_hippocampus(
    n_cells: int = 4000,
    n_spots: int = 600,
    n_genes: int = 800,
    cells_per_spot: tuple[int, int] = (5, 15),
    seed: int = 0,
) -> tuple[ad.AnnData, ad.AnnData]:
    """A reference ``(n_cells, n_genes)`` and spots ``(n_spots, n_genes)`` (see the module
    docstring); spot ``s`` holds ``U{cells_per_spot}`` held-out cells."""
    low, high = cells_per_spot
    if not 1 <= low <= high:
        raise ValueError(f"cells_per_spot must be (low, high) with 1 <= low <= high, got "
                         f"{cells_per_spot}.")
    n_markers = 2 * len(CELL_TYPES)
    if n_genes < n_markers + 20:
        raise ValueError(f"n_genes must be at least {n_markers + 20} (the {n_markers} "
                         f"markers and 20 background genes), got {n_genes}.")
    rng = np.random.default_rng(seed)
    genes = [g for pair in MARKERS.values() for g in pair]
    genes += [f"Gene{i:04d}" for i in range(1, n_genes - n_markers + 1)]
    frequencies, theta = _expression(rng, n_genes)
    # Spots: layout, regions, mixtures; then the cells of every spot.
    side = int(np.ceil(np.sqrt(n_spots)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)
    xy = (grid[:n_spots] + 0.5) / side
    region_weight = _region_weights(xy)  # (n_spots, n_regions)
    mean_mixture = _mean_mixtures(region_weight)
    mixture = np.stack([rng.dirichlet(np.maximum(_DIRICHLET_CONCENTRATION * m, 1e-3))
                        for m in mean_mixture])
    n_in_spot = rng.integers(low, high + 1, n_spots)
    # Type t's share of spot s is n_s p_st cells' worth of RNA: the mean of
    # ceil(n_s p_st) held-out cells of that type, scaled to n_s p_st cells.
    n_drawn = np.maximum(np.ceil(n_in_spot[:, None] * mixture), 1).astype(np.int64)
    spot_types = np.repeat(np.tile(np.arange(len(CELL_TYPES)), n_spots), n_drawn.ravel())
    # Reference cells, then the held-out cells of the spots: the same world, other cells.
    ref_types = rng.choice(len(CELL_TYPES), size=n_cells, p=_fractions())
    counts = _cell_counts(rng, np.concatenate([ref_types, spot_types]), frequencies, theta,
                          n_genes)
    ref_counts, spot_cells = counts[:n_cells], counts[n_cells:]
    # Each group of drawn cells is scaled to exactly n_s p_st median libraries, so that
    # p_st is the type's share of the spot's RNA as well as of its cells.
    group = np.repeat(np.arange(n_drawn.size), n_drawn.ravel())
    group_library = np.bincount(group, weights=np.asarray(spot_cells.sum(1)).ravel(),
                                minlength=n_drawn.size)
    median = _MEDIAN_LIBRARY_PER_500_GENES * n_genes / 500
    target = (n_in_spot[:, None] * mixture).ravel() * median
    weight = (target / np.maximum(group_library, 1.0))[group]
    owner = np.repeat(np.arange(n_spots), n_drawn.sum(1))
    summed = sp.csr_matrix((weight, (owner, np.arange(len(owner)))),
                           shape=(n_spots, len(owner))) @ spot_cells
    platform = np.exp(rng.normal(0.0, _PLATFORM_SD, n_genes))
    spot_counts = rng.poisson(np.asarray(summed.todense()) * platform).astype(np.float32)

    sc = ad.AnnData(sp.csr_matrix(ref_counts, dtype=np.float32))
    sc.obs_names = [f"cell_{i}" for i in range(n_cells)]
    sc.var_names = genes
    sc.obs["cell_type"] = pd.Categorical(np.asarray(CELL_TYPES)[ref_types],
                                         categories=list(CELL_TYPES))
    sc.obs["n_counts"] = np.asarray(ref_counts.sum(1)).ravel()
    sc.varm["true_frequencies"] = pd.DataFrame(frequencies.T, index=genes,
                                               columns=list(CELL_TYPES))

    st = ad.AnnData(sp.csr_matrix(spot_counts))
    st.obs_names = [f"spot_{i}" for i in range(n_spots)]
    st.var_names = genes
    st.var["platform_effect"] = platform
    st.obsm["spatial"] = xy
    st.obs["x"], st.obs["y"] = xy[:, 0], xy[:, 1]
    st.obs["region"] = pd.Categorical(np.asarray(list(REGIONS))[region_weight.argmax(1)],
                                      categories=list(REGIONS))
    st.obs["n_cells"] = n_in_spot
    st.obsm["true_proportions"] = pd.DataFrame(mixture, index=st.obs_names,
                                               columns=list(CELL_TYPES))
    return sc, st


def _fractions() -> np.ndarray:
    f = np.array(list(CELL_TYPE_FRACTIONS.values()))
    return f / f.sum()


def _expression(rng: np.random.Generator, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    """Each type's expression frequencies ``(n_types, n_genes)`` (rows sum to 1) and the
    genes' inverse dispersions ``(n_genes,)``: a baseline, class programs, type-specific
    shifts and markers, on the log scale."""
    n_types, n_markers = len(CELL_TYPES), 2 * len(CELL_TYPES)
    eta = np.tile(rng.normal(0.0, _BASELINE_SD, n_genes), (n_types, 1))
    eta[:, :n_markers] -= 2.0  # markers are near silent outside their type
    background = np.arange(n_markers, n_genes)
    for members in CLASSES.values():
        chosen = rng.choice(background, round(_CLASS_GENE_FRACTION * len(background)),
                            replace=False)
        lfc = rng.uniform(*_CLASS_LFC, len(chosen))
        for t in (CELL_TYPES.index(m) for m in members):
            eta[t, chosen] += lfc
    for t in range(n_types):
        chosen = rng.choice(background, round(_TYPE_GENE_FRACTION * len(background)),
                            replace=False)
        eta[t, chosen] += rng.normal(0.0, _TYPE_LFC_SD, len(chosen))
        eta[t, [2 * t, 2 * t + 1]] += rng.uniform(*_MARKER_LFC, 2)
    frequencies = np.exp(eta - eta.max(1, keepdims=True))
    theta = np.exp(rng.uniform(*np.log(_THETA_RANGE), n_genes))
    return frequencies / frequencies.sum(1, keepdims=True), theta


def _region_weights(xy: np.ndarray) -> np.ndarray:
    """Soft membership ``(n_spots, n_regions)`` of each spot: Gaussian bumps around each
    region's centre, normalised, so mixtures change smoothly across region borders."""
    bumps = np.stack([np.exp(-((xy - np.array(c)) ** 2).sum(1) / (2 * w**2))
                      for c, w, _ in REGIONS.values()], axis=1)
    return bumps / (bumps.sum(1, keepdims=True) + 1e-12)


def _mean_mixtures(region_weight: np.ndarray) -> np.ndarray:
    """Mean cell-type mixture ``(n_spots, n_types)``: the types' overall fractions tilted
    towards the types of the regions a spot belongs to."""
    affinity = np.zeros((len(REGIONS), len(CELL_TYPES)))
    for r, (_, _, enriched) in enumerate(REGIONS.values()):
        affinity[r, [CELL_TYPES.index(t) for t in enriched]] = _REGION_LFC
    logits = np.log(_fractions()) + region_weight @ affinity
    mixture = np.exp(logits - logits.max(1, keepdims=True))
    mixture /= mixture.sum(1, keepdims=True)
    return (1 - _UNIFORM_SHARE) * mixture + _UNIFORM_SHARE / len(CELL_TYPES)


def _cell_counts(rng: np.random.Generator, types: np.ndarray, frequencies: np.ndarray,
                 theta: np.ndarray, n_genes: int) -> sp.csr_matrix:
    """NB counts ``(n, n_genes)`` drawn as gamma-Poisson, mean ``L_n · frequencies[type]``
    with a log-normal library ``L_n``."""
    median = _MEDIAN_LIBRARY_PER_500_GENES * n_genes / 500
    library = median * np.exp(rng.normal(0.0, _LOG_LIBRARY_SD, len(types)))
    mean = library[:, None] * frequencies[types]
    rate = rng.gamma(theta, mean / theta)
    return sp.csr_matrix(rng.poisson(rate).astype(np.float32))
