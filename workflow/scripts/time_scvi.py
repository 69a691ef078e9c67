"""Rule time_scvi: the runtime of scVI's ``train`` on one subsample (paper Supp. Fig. 2,
Methods "Runtime"; protocol in ``scprob.bench.scaling.time_scvi``). Writes the job's record
(measurement, settings, machine) and the training history."""

from typing import Any

from workflow_helpers import (
    limit_threads,
    logged_to,
    read_subsample,
    write_csv,
    write_json,
)

from scprob.bench.scaling import time_scvi


def main(data_path: str, n_cells: int, settings: dict[str, Any], categorical_keys: list[str],
         continuous_keys: list[str], warmup_cells: int, seed: int, threads: int,
         timing_path: str, history_path: str) -> None:
    adata = read_subsample(data_path, n_cells)
    record, history = time_scvi(adata, settings, categorical_keys, continuous_keys,
                                warmup_cells, seed, threads)
    write_json(record, timing_path)
    write_csv(history, history_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        data_path=snakemake.input.data,
        n_cells=int(snakemake.wildcards.n_cells),
        settings=dict(snakemake.params.settings),
        categorical_keys=list(snakemake.params.categorical_keys),
        continuous_keys=list(snakemake.params.continuous_keys),
        warmup_cells=snakemake.params.warmup_cells,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        timing_path=snakemake.output.timing,
        history_path=snakemake.output.history,
    )
