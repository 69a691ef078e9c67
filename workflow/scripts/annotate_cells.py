"""Rule annotate_cells: one method's annotation of one data set (paper Supp. Fig. 6):
our CellAssign (``scprob.bench.cellassign.annotate``) or the marker-sum baseline. Writes
the assignment probabilities (cells × types; the baseline's are one-hot) and the timing."""

from typing import Any

import pandas as pd
from workflow_helpers import limit_threads, logged_to, read_h5ad_input, write_csv, write_json

from scprob.bench.cellassign import annotate, annotate_by_marker_sum


def main(method: str, data_path: str, markers_path: str, design_key: str | None,
         settings: dict[str, Any], seed: int, probabilities_path: str,
         timing_path: str) -> None:
    adata = read_h5ad_input(data_path)
    markers = pd.read_csv(markers_path, index_col="gene")
    if method == "scprob":
        probabilities, timing = annotate(adata, markers, settings, seed, design_key)
    else:
        probabilities, timing = annotate_by_marker_sum(adata, markers)
    write_csv(probabilities.rename_axis("cell").reset_index(), probabilities_path)
    write_json(timing, timing_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        method=snakemake.wildcards.method,
        data_path=snakemake.input.data,
        markers_path=snakemake.input.markers,
        design_key=snakemake.params.design_key,
        settings=dict(snakemake.params.settings),
        seed=snakemake.params.seed,
        probabilities_path=snakemake.output.probabilities,
        timing_path=snakemake.output.timing,
    )
