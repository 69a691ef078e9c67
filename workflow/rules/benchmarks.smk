# Training throughput of SCVI: scprob's cells/s on simulated counts at each configured
# batch size, on the CPU and on CUDA when present; with `peer: true` also scvi-tools 1.4.2
# on the very same data, in the same run, from its own environment (envs/scvi-tools.lock,
# created by `make peer-env` as .venv-peer, config `peer_python`) through workflow/scripts/peer_scvi_tools_throughput.py. Protocol:
# src/scprob/bench/throughput.py; the profile and the optimisations: docs/performance.md.
# The job takes every core, so no other job disturbs the timing.


rule benchmark_throughput:
    output:
        json="results/benchmarks/throughput.json",
        csv="results/benchmarks/throughput.csv",
        png=report(
            "results/benchmarks/throughput.png",
            caption="../report/throughput.rst",
            category="Model core",
            labels={"figure": "SCVI training throughput"},
        ),
        pdf="results/benchmarks/throughput.pdf",
    params:
        settings=throughput_settings(),
    threads: every_core()
    log:
        "logs/benchmarks/benchmark_throughput.log",
    benchmark:
        "results/benchmarks/benchmark_throughput.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/benchmark_throughput.py"


# Peak memory of SCVI training on a large sparse input: the paper's runtime
# study trains on up to 486,134 cells × 4,000 genes with 2 categorical and 10 continuous
# covariates; scprob must stay under `max_peak_rss_gib` there, which needs that only
# minibatches are ever made dense. The data are a CSR stand-in built in row blocks
# (scprob.bench.throughput.sparse_covariate_counts), so the measurement is the model's.
rule benchmark_sparse_memory:
    output:
        json="results/benchmarks/sparse_training_memory.json",
    params:
        settings={**config["benchmarks"]["sparse_memory"], "seed": config["seed"]},
    # Memory, not time, is measured: the job may run beside others.
    threads: 1
    log:
        "logs/benchmarks/benchmark_sparse_memory.log",
    benchmark:
        "results/benchmarks/benchmark_sparse_memory.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/benchmark_sparse_memory.py"


# Training speed by fit order and input format: SCVI on a subsample of the runtime study
# (CSR, 2 categorical + 10 continuous covariates, trained as that study trains), three
# timed fits of fresh models per process (two on one format, the third on the other), one
# process per kernel setting and order (protocol: src/scprob/bench/fit_order.py). A fit
# slower than the fastest of its format by more than `tolerance` is flagged in the table.
# Timed, so it takes every core and a timing slot like the runtime study's jobs.
rule benchmark_fit_order:
    input:
        data=fit_order_data(),
    output:
        csv=report(
            "results/benchmarks/fit_order.csv",
            caption="../report/fit_order.rst",
            category="Model core",
            labels={"figure": "training speed by fit order and input (table)"},
        ),
        json="results/benchmarks/fit_order.json",
        png=report(
            "results/benchmarks/fit_order.png",
            caption="../report/fit_order.rst",
            category="Model core",
            labels={"figure": "training speed by fit order and input"},
        ),
        pdf="results/benchmarks/fit_order.pdf",
    params:
        settings={
            k: v for k, v in config["benchmarks"]["fit_order"].items() if k != "n_cells"
        },
        categorical_keys=SCALING_CATEGORICAL_KEYS,
        continuous_keys=SCALING_CONTINUOUS_KEYS,
        seed=config["seed"],
    threads: every_core()
    resources:
        timing_slot=1,
    log:
        "logs/benchmarks/benchmark_fit_order.log",
    benchmark:
        "results/benchmarks/benchmark_fit_order.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/benchmark_fit_order.py"
