"""Rule simulate_tumour_markers: the offline stand-ins for paper Supp. Fig. 6c and 6f,
follicular-lymphoma-like and HGSC-like cells on the CellAssign paper's own marker lists
(``scprob.data.simulate.tumour_markers``), with their true types and the marker matrix."""

import logging
from typing import Any

from workflow_helpers import atomic_output, logged_to, write_csv

from scprob.data.simulate.tumour_markers import simulate_follicular, simulate_hgsc

log = logging.getLogger(snakemake.rule)
SIMULATORS = {"follicular": simulate_follicular, "hgsc": simulate_hgsc}


def main(dataset: str, settings: dict[str, Any], seed: int, data_path: str,
         markers_path: str) -> None:
    adata, markers = SIMULATORS[dataset](markers_file=settings["markers"],
                                         n_cells=settings["n_cells"], seed=seed)
    log.info("%s: %d cells x %d genes, %d markers x %d types; types: %s", dataset,
             adata.n_obs, adata.n_vars, *markers.shape,
             dict(adata.obs["cell_type"].value_counts()))
    with atomic_output(data_path) as partial:
        adata.write_h5ad(partial)
    write_csv(markers.rename_axis("gene").reset_index(), markers_path)


with logged_to(snakemake.log[0]):
    main(
        dataset=snakemake.wildcards.dataset,
        settings=dict(snakemake.params.settings),
        seed=snakemake.params.seed,
        data_path=snakemake.output.data,
        markers_path=snakemake.output.markers,
    )
