"""Rule benchmark_throughput: SCVI training throughput of scprob, and of scvi-tools on the
same data when ``peer: true`` (issue 3 §3; protocol in ``scprob.bench.throughput``).

Writes the JSON document (settings, machine, every measurement, ratios and held-out
ELBOs), a CSV with one row per engine and setting, and the bar chart as PNG and PDF.
"""

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from workflow_helpers import atomic_output, limit_threads, logged_to, write_csv

from scprob.bench.throughput import (
    ThroughputSettings,
    plot_throughput,
    results_table,
    run_benchmark,
)

log = logging.getLogger(snakemake.rule)


def main(settings: ThroughputSettings, outputs: Any) -> None:
    log.info("settings: %s", settings)
    with tempfile.TemporaryDirectory(prefix="throughput_") as scratch:
        document = run_benchmark(settings, Path(scratch), log=log.info)
    for comparison in document["comparisons"]:
        if comparison.get("throughput_ratio") is not None:
            log.info(
                "%s batch %d: scprob %.0f cells/s, scvi-tools %.0f cells/s, ratio %.2f; "
                "ELBO %.2f vs %.2f (gap %+.2f %%)",
                comparison["accelerator"], comparison["batch_size"],
                comparison["scprob"]["cells_per_s"], comparison["scvi_tools"]["cells_per_s"],
                comparison["throughput_ratio"], comparison["scprob"]["elbo_validation"],
                comparison["scvi_tools"]["elbo_validation"],
                100 * comparison["relative_elbo_gap"],
            )
    with atomic_output(outputs.json) as partial:
        partial.write_text(json.dumps(document, indent=2))
    write_csv(results_table(document), outputs.csv)
    with atomic_output(outputs.png) as png, atomic_output(outputs.pdf) as pdf:
        plot_throughput(document, [png, pdf])


def settings_from_config(config: dict, threads: int) -> ThroughputSettings:
    """The config block, with the peer paths resolved against the repository (this
    script's grandparent folder) and the torch threads."""
    scripts = Path(snakemake.scriptdir).resolve()
    repository = scripts.parents[1]
    peer_python = Path(config.pop("peer_python", ".venv-peer/bin/python"))
    # A positive `threads` in the config pins both engines to that many torch threads;
    # 0 (the default) gives them every core the job holds.
    threads = config.pop("threads", 0) or threads
    return ThroughputSettings(
        **config,
        threads=threads,
        peer_python=str(peer_python if peer_python.is_absolute() else repository / peer_python),
        peer_script=str(scripts / "peer_scvi_tools_throughput.py"),
    )


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(settings_from_config(dict(snakemake.params.settings), snakemake.threads),
         snakemake.output)
