"""Rule read_pbmc_68k: the runtime series of paper Supp. Fig. 6g from the real 10x 68k
PBMCs, as the paper built it: the first n cells at each size (68,579 halved down to
1,071), each cell's total count as its size factor, and the follicular-lymphoma markers
without TRAC (23 x 5; ``scprob.data.paper_data``). The cells carry no labels, so the
series measures time, not accuracy."""

import logging

from workflow_helpers import atomic_output, logged_to, write_csv

from scprob.data.io import read_10x_mtx_tar
from scprob.data.paper_data import pbmc_runtime_series, read_marker_csv, runtime_markers

log = logging.getLogger(snakemake.rule)


def main(archive: str, markers_path: str, sizes: list[int], data_paths: list[str],
         markers_out: str) -> None:
    series = pbmc_runtime_series(read_10x_mtx_tar(archive), sizes)
    for n_cells, path in zip(sizes, data_paths, strict=True):
        log.info("%d cells x %d genes", series[n_cells].n_obs, series[n_cells].n_vars)
        with atomic_output(path) as partial:
            series[n_cells].write_h5ad(partial)
    markers = runtime_markers(read_marker_csv(markers_path))
    write_csv(markers.rename_axis("gene").reset_index(), markers_out)


with logged_to(snakemake.log[0]):
    main(
        archive=snakemake.input.archive,
        markers_path=snakemake.input.follicular_markers,
        sizes=list(snakemake.params.sizes),
        data_paths=list(snakemake.output.data),
        markers_out=snakemake.output.markers,
    )
