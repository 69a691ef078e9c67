# Training throughput of SCVI (issue 3 §3): scprob's cells/s on simulated counts at each
# configured batch size, on the CPU and on CUDA when present; with `peer: true` also
# scvi-tools 1.4.2 on the very same data, from its own environment (envs/scvi-tools.lock,
# created as .venv-peer; a relative `peer_python` is read from the repository root), in the
# same run. Protocol, the profile that guided the work and the optimisations:
# src/scprob/bench/throughput.py. The job takes every core, so no other job disturbs the
# timing.


rule benchmark_throughput:
    output:
        json="results/benchmarks/throughput.json",
        csv="results/benchmarks/throughput.csv",
        png="results/benchmarks/throughput.png",
        pdf="results/benchmarks/throughput.pdf",
    params:
        settings={**config["benchmarks"]["throughput"], "seed": config["seed"]},
    threads: workflow.cores
    log:
        "logs/benchmarks/benchmark_throughput.log",
    benchmark:
        "results/benchmarks/benchmark_throughput.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/benchmark_throughput.py"
