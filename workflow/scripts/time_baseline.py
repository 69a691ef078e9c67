"""Rule time_baseline: the runtime of a scanpy baseline (regress, regress-bbknn or
regress-harmony) on every subsample, smallest first, in one process (paper Supp. Fig. 2,
Methods "Runtime"; protocol in ``scprob.bench.scaling.time_baseline``). Writes each size's
record (measurement, settings, machine)."""

import gc

from workflow_helpers import limit_threads, logged_to, read_subsample, write_json

from scprob.bench.scaling import time_baseline


def main(data_paths: list[str], sizes: list[int], method: str, categorical_keys: list[str],
         continuous_keys: list[str], n_pcs: int, warmup_cells: int, seed: int, threads: int,
         timing_paths: list[str]) -> None:
    for i, (data_path, n_cells, timing_path) in enumerate(
            zip(data_paths, sizes, timing_paths, strict=True)):
        adata = read_subsample(data_path, n_cells)
        record = time_baseline(adata, method, categorical_keys, continuous_keys, n_pcs,
                               warmup_cells, seed, threads, warm_up=i == 0)
        write_json(record, timing_path)
        del adata
        gc.collect()  # the next size's peak memory is its own


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        data_paths=list(snakemake.input.data),
        sizes=list(snakemake.params.sizes),
        method=snakemake.wildcards.method,
        categorical_keys=list(snakemake.params.categorical_keys),
        continuous_keys=list(snakemake.params.continuous_keys),
        n_pcs=snakemake.params.n_pcs,
        warmup_cells=snakemake.params.warmup_cells,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        timing_paths=list(snakemake.output.timings),
    )
