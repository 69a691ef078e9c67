"""Rule read_cellbench: the real panel of the CellAssign study, the CellBench lung cell
lines of one technology (singlets, genotype truth in ``obs["cell_type"]``) and the
CellAssign paper's marker list restricted to the genes measured
(``scprob.data.io.read_cellbench``)."""

import logging

from workflow_helpers import atomic_output, logged_to, write_csv

from scprob.data.io import read_cellbench, read_marker_yaml

log = logging.getLogger(snakemake.rule)


def main(counts_path: str, metadata_path: str, gene_map_path: str, markers_path: str,
         data_path: str, markers_out: str) -> None:
    adata = read_cellbench(counts_path, metadata_path, gene_map_path)
    adata.obs["cell_type"] = adata.obs["cell_line"]
    markers = read_marker_yaml(markers_path)
    missing = markers.index.difference(adata.var_names)
    log.info("%d singlets x %d genes; lines: %s; %d of %d markers measured (missing: %s)",
             adata.n_obs, adata.n_vars, dict(adata.obs["cell_type"].value_counts()),
             len(markers) - len(missing), len(markers), list(missing))
    markers = markers.drop(index=missing)
    with atomic_output(data_path) as partial:
        adata.write_h5ad(partial)
    write_csv(markers.rename_axis("gene").reset_index(), markers_out)


with logged_to(snakemake.log[0]):
    main(
        counts_path=snakemake.input.counts,
        metadata_path=snakemake.input.metadata,
        gene_map_path=snakemake.input.gene_map,
        markers_path=snakemake.input.markers,
        data_path=snakemake.output.data,
        markers_out=snakemake.output.markers,
    )
