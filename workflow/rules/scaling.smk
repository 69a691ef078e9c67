# Paper Supp. Fig. 2: how runtime and memory grow with the number of cells, for scVI with
# many covariates against the scanpy baselines, on subsamples of the Heart Cell Atlas
# (here a simulation of it with the same covariates). The atlas is simulated once at the
# largest size; each size is a random subsample restricted to its 4,000 most variable
# genes (seurat_v3). Timed per method, as in the paper's Methods:
#
#   scvi             SCVI.train with cell_source + donor (categorical) and 10 continuous
#                    covariates, early stopping (patience 45), batch 1,024, 20 batches an
#                    epoch at most, 90 % training cells (all but 20,000 above 200,000 cells)
#   regress          scanpy.pp.regress_out of the 10 continuous covariates, nothing else
#   regress_bbknn    regress_out + PCA + bbknn on the batch cell_source x donor
#   regress_harmony  regress_out + PCA + Harmony on cell_source and donor
#
# What is regressed out: the 10 continuous covariates (percent_mito, percent_ribo,
# cont_cov_1..8) of the log-normalised data. regress_out accepts several numerical keys or
# a single categorical one alone, so the two categorical covariates go to bbknn (one key:
# their combination) and Harmony (both keys).
#
# One timing job per method times every size, smallest first, after one warm-up: the
# process start-up and the warm-up are paid once, not once per size.
#
# Timing jobs must not overlap, or they slow each other down: each takes every core the
# run was given (threads: every_core()), so a local `snakemake --cores N` (and
# `make workflow`) runs them one at a time, with nothing else beside them. They also claim
# one `timing_slot`: with --resources timing_slot=1 (needed when --set-threads lowers
# their threads, or with --jobs on a cluster, to keep them serial; profiles/slurm sets it)
# Snakemake never runs two at once.


# The atlas: simulated once at the largest size (scaling.simulate), or the paper's real
# Heart Cell Atlas file (scaling.real), read in chunks by the subsampler, never whole.
if not SCALING_REAL:

    rule simulate_heart_atlas:
        output:
            atlas="results/scaling/data/heart_atlas.h5ad",
        params:
            n_cells=scaling_atlas_cells(),
            n_genes=config["scaling"]["simulate"]["n_genes"],
            chunk_size=config["scaling"]["simulate"]["chunk_size"],
            seed=config["seed"],
        log:
            "logs/scaling/simulate_heart_atlas.log",
        benchmark:
            "results/scaling/benchmarks/simulate_heart_atlas.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/simulate_heart_atlas.py"


rule subsample_heart:
    input:
        atlas=scaling_atlas(),
    output:
        data="results/scaling/data/heart_{n_cells}.h5ad",
    wildcard_constraints:
        n_cells=r"[0-9]+",
    params:
        n_top_genes=config["scaling"]["n_top_genes"],
        # The paper chose each subsample's genes per cell source on real data.
        batch_key=scaling_hvg_batch_key(),
        # Standard-normal covariates a real atlas lacks (the simulation draws its own).
        noise_covariates=SCALING_NOISE_KEYS,
        seed=config["seed"],
    log:
        "logs/scaling/subsample_heart_{n_cells}.log",
    benchmark:
        "results/scaling/benchmarks/subsample_heart_{n_cells}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/subsample_heart.py"


rule time_scvi:
    input:
        data=scaling_subsamples(),
    output:
        timings=scaling_per_size("results/scaling/timings/scvi_{n_cells}.json"),
        histories=scaling_per_size(
            "results/scaling/timings/scvi_{n_cells}_training_history.csv"
        ),
    params:
        sizes=scaling_sizes(),
        settings=config["scaling"]["scvi"],
        categorical_keys=SCALING_CATEGORICAL_KEYS,
        continuous_keys=SCALING_CONTINUOUS_KEYS,
        warmup_cells=config["scaling"]["warmup_cells"],
        seed=config["seed"],
    threads: every_core()
    resources:
        timing_slot=1,
    log:
        "logs/scaling/time_scvi.log",
    benchmark:
        "results/scaling/benchmarks/time_scvi.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/time_scvi.py"


rule time_baseline:
    input:
        data=scaling_subsamples(),
    output:
        timings=scaling_per_size("results/scaling/timings/{{method}}_{n_cells}.json"),
    wildcard_constraints:
        method="|".join(SCALING_BASELINES),
    params:
        sizes=scaling_sizes(),
        categorical_keys=SCALING_CATEGORICAL_KEYS,
        continuous_keys=SCALING_CONTINUOUS_KEYS,
        n_pcs=config["scaling"]["n_pcs"],
        warmup_cells=config["scaling"]["warmup_cells"],
        seed=config["seed"],
    threads: every_core()
    resources:
        timing_slot=1,
    log:
        "logs/scaling/time_{method}.log",
    benchmark:
        "results/scaling/benchmarks/time_{method}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/time_baseline.py"


rule aggregate_scaling:
    input:
        timings=scaling_per_method_and_size("results/scaling/timings/{method}_{n_cells}.json"),
        benchmarks=expand(
            "results/scaling/benchmarks/time_{method}.tsv", method=scaling_methods()
        ),
    output:
        table=report(
            "results/scaling/tables/runtime.csv",
            caption="../report/scaling_runtime_table.rst",
            category="Runtime (Supp. Fig. 2)",
            labels={"panel": "Supp. Fig. 2", "figure": "runtime and memory table"},
        ),
        claim_check=report(
            "results/scaling/tables/claim_check.csv",
            caption="../report/scaling_claim_check.rst",
            category="Runtime (Supp. Fig. 2)",
            labels={"panel": "Supp. Fig. 2", "figure": "claim check"},
        ),
    params:
        display_names=scaling_display_names(),
        methods=scaling_methods(),
        plateau_cells=config["scaling"]["plateau_cells"],
        max_plateau_slope=config["scaling"]["max_plateau_slope"],
    log:
        "logs/scaling/aggregate_scaling.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/aggregate_scaling.py"


rule figures_scaling:
    input:
        table="results/scaling/tables/runtime.csv",
    output:
        png=report(
            "results/scaling/figures/supp_fig2_runtime.png",
            caption="../report/scaling_runtime_figure.rst",
            category="Runtime (Supp. Fig. 2)",
            labels={"panel": "Supp. Fig. 2", "figure": "runtime and memory vs cells"},
        ),
        pdf="results/scaling/figures/supp_fig2_runtime.pdf",
    log:
        "logs/scaling/figures_scaling.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/figures_scaling.py"
