"""Rule benchmark_sparse_memory: peak resident memory of SCVI training with all covariates
on a large CSR input (protocol in ``scprob.bench.throughput.sparse_training_memory``), and
whether it stays under the configured limit.

The script is its own process (Snakemake runs each ``script:`` in a fresh interpreter), so
the peaks are this training's alone.
"""

import logging
from typing import Any

from workflow_helpers import limit_threads, logged_to, write_json

from scprob.bench.measure import GIB
from scprob.bench.throughput import sparse_training_memory

log = logging.getLogger(snakemake.rule)


def main(settings: dict[str, Any], output: str) -> None:
    limit_gib = settings.pop("max_peak_rss_gib")
    log.info("settings: %s", settings)
    document = sparse_training_memory(**settings)
    peak_gib = document["peak_rss_bytes_max"] / GIB
    document.update(max_peak_rss_gib=limit_gib, peak_rss_gib=peak_gib,
                    within_limit=bool(peak_gib <= limit_gib))
    log.info("%d cells x %d genes (%.1f %% nonzero, CSR %.2f GiB, dense would be %.1f GiB): "
             "peak RSS %.2f GiB (limit %.1f GiB) by phase %s; 20 minibatches and the "
             "validation pass in %.1f s",
             document["n_cells"], document["n_genes"], 100 * document["nonzero_fraction"],
             document["csr_bytes"] / GIB, document["dense_matrix_bytes"] / GIB, peak_gib,
             limit_gib, {k: round(v / GIB, 2) for k, v in document["peak_rss_bytes"].items()},
             document["training_wall_s"])
    write_json(document, output)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(dict(snakemake.params.settings), snakemake.output.json)
