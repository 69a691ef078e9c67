"""Marker-panel data with a known truth: a generic negative-binomial generator and the
offline stand-ins for the CellAssign paper's follicular lymphoma and HGSC data (paper
Supp. Fig. 6c, 6f), built on that paper's own marker lists (``config/markers``).

Cell ``n`` of type ``t_n`` from patient ``p_n`` has counts
``x_ng ~ NB(mean s_n exp(b_g + d_g,t_n ρ_g,t_n + γ_g,p_n), θ)``: ``ρ`` the binary markers
``(G_markers, T)``, ``b_g`` a gene's base log expression, ``d`` a marker's log fold change,
``γ`` a patient's log shift of every gene (patient 0 has none), ``s_n`` a log-normal size
factor, ``θ`` the inverse dispersion. Non-marker genes set the library size. The patient
shift is the CellAssign model's own design term, so a fit with the patient as its design
covariate is well specified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from scprob.data.io import read_marker_yaml

# The follicular lymphoma study's types (paper Supp. Fig. 6c): the CellAssign paper's
# finer T-cell states of ``follicular_big.yaml`` merged to the panel's four lymphoid
# types; "Other" stands for the non-lymphoid rest, given the classical myeloid markers
# that none of the lymphoid lists holds.
FOLLICULAR_MERGE: dict[str, list[str]] = {
    "B cells": ["B cells"],
    "Cytotoxic T cells": ["Cytotoxic T cells", "Cytotoxic T cells (activated)"],
    "Tfh": ["Tfh"],
    "Other T cells": ["Naive/resting CD4", "CD4 (activated)"],
}
OTHER_MARKERS = ["CD14", "LYZ", "CD68"]
FOLLICULAR_PROPORTIONS = {"B cells": 0.55, "Cytotoxic T cells": 0.12, "Tfh": 0.1,
                          "Other T cells": 0.18, "Other": 0.05}
# An HGSC tumour: mostly epithelial, with stroma, vasculature and immune infiltrate.
HGSC_PROPORTIONS = {"B cells": 0.03, "T cells": 0.1, "Monocyte/Macrophage": 0.12,
                    "Epithelial cells": 0.4, "Ovarian stromal cells": 0.15,
                    "Ovarian myofibroblast": 0.1, "Vascular smooth muscle cells": 0.05,
                    "Endothelial cells": 0.05}


def merge_marker_types(rho: pd.DataFrame, merge: dict[str, list[str]]) -> pd.DataFrame:
    """A coarser panel: each new type marked by the union of its source types' markers."""
    merged = pd.DataFrame({new: rho[old].max(axis=1) for new, old in merge.items()})
    return merged.loc[merged.sum(axis=1) > 0].astype(np.int64)


def follicular_marker_matrix(markers_file: str | Path) -> pd.DataFrame:
    """Genes × the five follicular types (B, cytotoxic T, Tfh, other T, other) from
    ``follicular_big.yaml``."""
    rho = merge_marker_types(read_marker_yaml(markers_file), FOLLICULAR_MERGE)
    other = pd.DataFrame(0, index=OTHER_MARKERS, columns=rho.columns)
    rho = pd.concat([rho, other]).astype(np.int64)
    rho["Other"] = rho.index.isin(OTHER_MARKERS).astype(np.int64)
    return rho


def simulate_marker_counts(
    rho: pd.DataFrame,
    proportions: np.ndarray,
    n_cells: int,
    n_other_genes: int = 77,
    dispersion: float = 5.0,
    fold_range: tuple[float, float] = (1.2, 2.5),
    n_patients: int = 1,
    patient_sd: float = 0.3,
    seed: int = 0,
) -> AnnData:
    """Counts ``(n_cells, G_markers + n_other_genes)`` float32 of the model above, with
    ``obs["cell_type"]`` (the columns of ``rho``) and, for ``n_patients > 1``,
    ``obs["patient"]``; marker genes first, in ``rho``'s order."""
    rng = np.random.default_rng(seed)
    cell_types = list(rho.columns)
    n_markers = len(rho)
    types = rng.choice(len(cell_types), size=n_cells, p=proportions)
    size = rng.lognormal(0.0, 0.4, size=n_cells)
    base = np.concatenate([rng.uniform(np.log(0.1), np.log(1.0), n_markers),
                           rng.uniform(np.log(0.2), np.log(5.0), n_other_genes)])
    fold = rng.uniform(*fold_range, size=rho.shape) * rho.to_numpy()
    log_mean = np.tile(base, (n_cells, 1))
    log_mean[:, :n_markers] += fold[:, types].T
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.asarray(cell_types)[types],
                                                    categories=cell_types)},
                       index=[f"cell{i}" for i in range(n_cells)])
    if n_patients > 1:
        patients = rng.integers(n_patients, size=n_cells)
        shift = rng.normal(0.0, patient_sd, size=(n_patients, len(base)))
        shift[0] = 0.0
        log_mean += shift[patients]
        obs["patient"] = pd.Categorical([f"patient{p + 1}" for p in patients])
    mean = size[:, None] * np.exp(log_mean)
    # NB as a gamma–Poisson mixture.
    counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)
    genes = [*rho.index, *(f"gene{i}" for i in range(n_other_genes))]
    return AnnData(counts, obs=obs, var=pd.DataFrame(index=genes))


def _proportions(rho: pd.DataFrame, table: dict[str, float]) -> np.ndarray:
    p = np.array([table[t] for t in rho.columns])
    return p / p.sum()


def simulate_follicular(markers_file: str | Path, n_cells: int = 4000, n_patients: int = 2,
                        seed: int = 0) -> tuple[AnnData, pd.DataFrame]:
    """Follicular-lymphoma-like cells from ``n_patients`` patients (``obs["patient"]``, the
    design covariate): ``(adata, marker_gene_mat)``."""
    rho = follicular_marker_matrix(markers_file)
    adata = simulate_marker_counts(rho, _proportions(rho, FOLLICULAR_PROPORTIONS), n_cells,
                                   n_patients=n_patients, seed=seed)
    return adata, rho


def simulate_hgsc(markers_file: str | Path, n_cells: int = 4000, seed: int = 0
                  ) -> tuple[AnnData, pd.DataFrame]:
    """HGSC-like cells on ``hgsc_small.yaml``'s eight types: ``(adata, marker_gene_mat)``."""
    rho = read_marker_yaml(markers_file)
    adata = simulate_marker_counts(rho, _proportions(rho, HGSC_PROPORTIONS), n_cells,
                                   seed=seed)
    return adata, rho
