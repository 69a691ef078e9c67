"""Rule time_baseline: the runtime of a scanpy baseline (regress, regress-bbknn or
regress-harmony) on one subsample (paper Supp. Fig. 2, Methods "Runtime"; protocol in
``scprob.bench.scaling.time_baseline``). Writes the job's record (measurement, settings,
machine)."""

from workflow_helpers import limit_threads, logged_to, read_subsample, write_json

from scprob.bench.scaling import time_baseline


def main(data_path: str, method: str, n_cells: int, categorical_keys: list[str],
         continuous_keys: list[str], n_pcs: int, warmup_cells: int, seed: int, threads: int,
         timing_path: str) -> None:
    adata = read_subsample(data_path, n_cells)
    record = time_baseline(adata, method, categorical_keys, continuous_keys, n_pcs,
                           warmup_cells, seed, threads)
    write_json(record, timing_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        data_path=snakemake.input.data,
        method=snakemake.wildcards.method,
        n_cells=int(snakemake.wildcards.n_cells),
        categorical_keys=list(snakemake.params.categorical_keys),
        continuous_keys=list(snakemake.params.continuous_keys),
        n_pcs=snakemake.params.n_pcs,
        warmup_cells=snakemake.params.warmup_cells,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        timing_path=snakemake.output.timing,
    )
