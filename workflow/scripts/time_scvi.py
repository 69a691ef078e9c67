"""Rule time_scvi: the runtime of scVI's ``train`` on every subsample, smallest first, in
one process (paper Supp. Fig. 2, Methods "Runtime"; protocol in
``scprob.bench.scaling.time_scvi``). Writes each size's record (measurement, settings,
machine) and training history."""

import gc
from typing import Any

from workflow_helpers import (
    limit_threads,
    logged_to,
    read_subsample,
    write_csv,
    write_json,
)

from scprob.bench.scaling import time_scvi


def main(data_paths: list[str], sizes: list[int], settings: dict[str, Any],
         categorical_keys: list[str], continuous_keys: list[str], warmup_cells: int,
         seed: int, threads: int, timing_paths: list[str], history_paths: list[str]) -> None:
    for i, (data_path, n_cells, timing_path, history_path) in enumerate(
            zip(data_paths, sizes, timing_paths, history_paths, strict=True)):
        adata = read_subsample(data_path, n_cells)
        record, history = time_scvi(adata, settings, categorical_keys, continuous_keys,
                                    warmup_cells, seed, threads, warm_up=i == 0)
        write_json(record, timing_path)
        write_csv(history, history_path)
        del adata, history
        gc.collect()  # the next size's peak memory is its own


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        data_paths=list(snakemake.input.data),
        sizes=list(snakemake.params.sizes),
        settings=dict(snakemake.params.settings),
        categorical_keys=list(snakemake.params.categorical_keys),
        continuous_keys=list(snakemake.params.continuous_keys),
        warmup_cells=snakemake.params.warmup_cells,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        timing_paths=list(snakemake.output.timings),
        history_paths=list(snakemake.output.histories),
    )
