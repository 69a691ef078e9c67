"""A PBMC-like marker panel (5 types, 23 markers, as the paper's CellAssign runtime panel)
with negative-binomial counts, and the marker-sum baseline annotation.

Counts follow ``scprob.data.simulate.tumour_markers.simulate_marker_counts`` (one patient):
``x_ng ~ NB(mean s_n exp(b_g + d_g,t_n ρ_g,t_n), θ = 5)``, a marker's log fold change
``d`` in 1.2–2.5; beside the markers, ``n_other_genes`` non-marker genes set the library
size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from scprob.data.simulate.tumour_markers import simulate_marker_counts

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
    rho = marker_gene_matrix()
    adata = simulate_marker_counts(rho, PROPORTIONS, n_cells, n_other_genes=n_other_genes,
                                   dispersion=dispersion, seed=seed)
    return adata, rho


def marker_sum_labels(adata: AnnData, marker_gene_mat: pd.DataFrame,
                      layer: str | None = None) -> pd.Series:
    """The baseline: each cell's type is the one whose markers sum to the most counts."""
    x = adata[:, marker_gene_mat.index].X if layer is None else \
        adata[:, marker_gene_mat.index].layers[layer]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    scores = x @ marker_gene_mat.to_numpy(dtype=np.float64)
    return pd.Series(np.asarray(marker_gene_mat.columns)[scores.argmax(1)],
                     index=adata.obs_names, name="marker_sum")
