"""A PBMC-like marker panel (5 types, 23 markers, as the paper's CellAssign runtime panel)
with negative-binomial counts, and the marker-sum baseline annotation.

Cell ``n`` of type ``t_n`` has counts ``x_ng ~ NB(mean s_n exp(b_g + d_g,t_n ρ_g,t_n), θ)``:
``b_g`` a gene's base log expression, ``ρ`` the binary markers ``(G_markers, 5)``, ``d`` a
marker's log fold change (1.2–2.5), ``s_n`` a log-normal size factor, ``θ = 5``. Beside
the markers, ``n_other_genes`` non-marker genes set the library size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

CELL_TYPES = ["B cells", "T cells", "NK cells", "Monocytes", "Dendritic cells"]
PROPORTIONS = np.array([0.15, 0.45, 0.12, 0.2, 0.08])
# type → its markers; several are shared, as real panels are (CD3 on T and NK-T…).
MARKERS: dict[str, list[str]] = {
    "B cells": ["CD19", "MS4A1", "CD79A", "CD74"],
    "T cells": ["CD3D", "CD3E", "CD3G", "CD2", "IL7R", "CD247"],
    "NK cells": ["NKG7", "GNLY", "KLRD1", "NCAM1", "CD247", "CD2"],
    "Monocytes": ["CD14", "LYZ", "FCGR3A", "CST3", "S100A8", "CD74"],
    "Dendritic cells": ["FCER1A", "CLEC10A", "CD1C", "CST3", "HLA-DQA1", "CD74"],
}


def marker_gene_matrix() -> pd.DataFrame:
    """The binary genes × types panel: 23 genes, 5 types."""
    genes = list(dict.fromkeys(g for markers in MARKERS.values() for g in markers))
    rho = pd.DataFrame(0, index=genes, columns=CELL_TYPES)
    for cell_type, markers in MARKERS.items():
        rho.loc[markers, cell_type] = 1
    return rho


def simulate_pbmc_markers(n_cells: int = 1000, n_other_genes: int = 77, dispersion: float = 5.0,
                          seed: int = 0) -> tuple[AnnData, pd.DataFrame]:
    """``(adata, marker_gene_mat)``: counts of the 23 markers and ``n_other_genes`` others,
    true types in ``obs["cell_type"]``."""
    rng = np.random.default_rng(seed)
    rho = marker_gene_matrix()
    n_markers = len(rho)
    types = rng.choice(len(CELL_TYPES), size=n_cells, p=PROPORTIONS)
    size = rng.lognormal(0.0, 0.4, size=n_cells)
    base = np.concatenate([rng.uniform(np.log(0.1), np.log(1.0), n_markers),
                           rng.uniform(np.log(0.2), np.log(5.0), n_other_genes)])
    fold = rng.uniform(1.2, 2.5, size=rho.shape) * rho.to_numpy()
    log_mean = np.tile(base, (n_cells, 1))
    log_mean[:, :n_markers] += fold[:, types].T
    mean = size[:, None] * np.exp(log_mean)
    # NB as a gamma–Poisson mixture.
    counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)
    genes = [*rho.index, *(f"gene{i}" for i in range(n_other_genes))]
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.asarray(CELL_TYPES)[types],
                                                    categories=CELL_TYPES)},
                       index=[f"cell{i}" for i in range(n_cells)])
    return AnnData(counts, obs=obs, var=pd.DataFrame(index=genes)), rho


def marker_sum_labels(adata: AnnData, marker_gene_mat: pd.DataFrame,
                      layer: str | None = None) -> pd.Series:
    """The baseline: each cell's type is the one whose markers sum to the most counts."""
    x = adata[:, marker_gene_mat.index].X if layer is None else \
        adata[:, marker_gene_mat.index].layers[layer]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    scores = x @ marker_gene_mat.to_numpy(dtype=np.float64)
    return pd.Series(np.asarray(marker_gene_mat.columns)[scores.argmax(1)],
                     index=adata.obs_names, name="marker_sum")
