"""Rule read_cellassign_paper_data: one of the paper's real CellAssign data sets (Supp.
Fig. 6c, f: follicular lymphoma, HGSC), its published labels as the truth and its
published size factors, with the CellAssign paper's marker matrix restricted to the genes
measured (``scprob.data.paper_data``)."""

import logging

from workflow_helpers import atomic_output, logged_to, read_h5ad_input, write_csv

from scprob.data.paper_data import prepare_cellassign_data, read_marker_csv

log = logging.getLogger(snakemake.rule)


def main(data_path: str, markers_path: str, truth_key: str, data_out: str,
         markers_out: str) -> None:
    markers = read_marker_csv(markers_path)
    adata = prepare_cellassign_data(read_h5ad_input(data_path), markers, truth_key=truth_key)
    measured = markers.loc[markers.index.intersection(adata.var_names, sort=False)]
    log.info("%d cells x %d genes; types: %s; %d of %d markers measured", adata.n_obs,
             adata.n_vars, adata.obs["cell_type"].value_counts().to_dict(), len(measured),
             len(markers))
    with atomic_output(data_out) as partial:
        adata.write_h5ad(partial)
    write_csv(measured.rename_axis("gene").reset_index(), markers_out)


with logged_to(snakemake.log[0]):
    main(
        data_path=snakemake.input.data,
        markers_path=snakemake.input.markers,
        truth_key=snakemake.params.truth_key,
        data_out=snakemake.output.data,
        markers_out=snakemake.output.markers,
    )
