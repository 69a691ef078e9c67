"""Rule benchmark_throughput: SCVI training throughput of scprob, and of scvi-tools on the
same data when ``peer: true`` (protocol in ``scprob.bench.throughput``). Writes the JSON
document (settings, machine, every measurement, ratios and held-out ELBOs), a CSV with one
row per engine and setting, and the bar chart as PNG and PDF."""

import logging
import tempfile
from pathlib import Path
from typing import Any

from workflow_helpers import atomic_output, limit_threads, logged_to, write_csv, write_json

from scprob.bench.throughput import (
    ThroughputSettings,
    plot_throughput,
    results_table,
    run_benchmark,
)

log = logging.getLogger(snakemake.rule)


def main(settings: dict[str, Any], job_threads: int, outputs: Any) -> None:
    # A positive `threads` in the config pins both engines to that many torch threads;
    # 0 (the default) gives them every core the job holds.
    settings = ThroughputSettings(**{**settings, "threads": settings["threads"] or job_threads})
    log.info("settings: %s", settings)
    with tempfile.TemporaryDirectory(prefix="throughput_") as scratch:
        document = run_benchmark(settings, Path(scratch), log=log.info)
    write_json(document, outputs.json)
    write_csv(results_table(document), outputs.csv)
    with atomic_output(outputs.png) as png, atomic_output(outputs.pdf) as pdf:
        plot_throughput(document, [png, pdf])


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(dict(snakemake.params.settings), snakemake.threads, snakemake.output)
