# Paper Fig. 2 and Supp. Fig. 1: removing nuisance variation (cell cycle, sex) passed as
# continuous covariates. scVI (batch only) and scVI-cc (batch + 55 nuisance genes) against
# the scanpy workflows regress-bbknn and regress-harmony, scored by Geary's C of marker
# and nuisance genes over each method's neighbour graph.


# The counts: simulated (covariates.simulate), or the paper's real AMP matrix with the
# authors' metadata (covariates.real).
if not COVARIATES_REAL:

    rule simulate_wing_disc:
        output:
            counts="results/covariates/data/wing_disc_counts.h5ad",
        params:
            n_cells=config["covariates"]["simulate"]["n_cells"],
            n_genes=config["covariates"]["simulate"]["n_genes"],
            seed=config["seed"],
        log:
            "logs/covariates/simulate_wing_disc.log",
        benchmark:
            "results/covariates/benchmarks/simulate_wing_disc.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/simulate_wing_disc.py"

else:

    rule read_wing_disc:
        input:
            unpack(covariates_real_inputs),
        output:
            counts="results/covariates/data/wing_disc_counts.h5ad",
        params:
            marker_genes=config["covariates"]["real"]["marker_genes"],
        log:
            "logs/covariates/read_wing_disc.log",
        benchmark:
            "results/covariates/benchmarks/read_wing_disc.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/read_wing_disc.py"


rule prepare_covariates:
    input:
        counts="results/covariates/data/wing_disc_counts.h5ad",
    output:
        prepared="results/covariates/data/wing_disc_prepared.h5ad",
        genes_table="results/covariates/tables/supp_table2_genes.csv",
        marker_genes="results/covariates/data/marker_genes.txt",
        nuisance_genes="results/covariates/data/nuisance_genes.txt",
    log:
        "logs/covariates/prepare_covariates.log",
    benchmark:
        "results/covariates/benchmarks/prepare_covariates.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/prepare_covariates.py"


rule integrate_scvi:
    input:
        prepared="results/covariates/data/wing_disc_prepared.h5ad",
    output:
        integrated="results/covariates/integrated/{method}.h5ad",
        model=directory("results/covariates/models/{method}"),
        history="results/covariates/tables/{method}_training_history.csv",
    wildcard_constraints:
        method="|".join(COVARIATES_SCVI_METHODS),
    params:
        display_name=lambda wildcards: COVARIATES_DISPLAY_NAMES[wildcards.method],
        settings=covariates_scvi_settings(),
        batch_key=config["covariates"]["batch_key"],
        n_neighbors=config["covariates"]["n_neighbors"],
    threads: config["covariates"]["threads"]
    # Long single-thread fits start early (see train_totalvi_scarches).
    priority: 10
    log:
        "logs/covariates/integrate_{method}.log",
    benchmark:
        "results/covariates/benchmarks/integrate_{method}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/integrate_scvi.py"


rule integrate_baseline:
    input:
        prepared="results/covariates/data/wing_disc_prepared.h5ad",
    output:
        integrated="results/covariates/integrated/{method}.h5ad",
    wildcard_constraints:
        method="|".join(COVARIATES_BASELINES),
    params:
        display_name=lambda wildcards: COVARIATES_DISPLAY_NAMES[wildcards.method],
        batch_key=config["covariates"]["batch_key"],
        n_pcs=config["covariates"]["n_pcs"],
        n_neighbors=config["covariates"]["n_neighbors"],
        seed=config["seed"],
    threads: config["covariates"]["threads"]
    log:
        "logs/covariates/integrate_{method}.log",
    benchmark:
        "results/covariates/benchmarks/integrate_{method}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/integrate_baseline.py"


rule evaluate:
    input:
        prepared="results/covariates/data/wing_disc_prepared.h5ad",
        integrated="results/covariates/integrated/{method}.h5ad",
    output:
        gearys_c="results/covariates/tables/per_method/{method}_gearys_c.csv",
        ground_truth="results/covariates/tables/per_method/{method}_ground_truth.csv",
    wildcard_constraints:
        method="|".join(COVARIATES_DISPLAY_NAMES),
    params:
        truth=COVARIATES_TRUTH,
        batch_key=config["covariates"]["batch_key"],
        probe_folds=config["covariates"]["probe_folds"],
        seed=config["seed"],
    threads: config["covariates"]["threads"]
    log:
        "logs/covariates/evaluate_{method}.log",
    benchmark:
        "results/covariates/benchmarks/evaluate_{method}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/evaluate.py"


rule aggregate_covariates:
    input:
        gearys_c=covariates_per_method(
            "results/covariates/tables/per_method/{method}_gearys_c.csv"
        ),
        ground_truth=covariates_per_method(
            "results/covariates/tables/per_method/{method}_ground_truth.csv"
        ),
    output:
        gearys_c="results/covariates/tables/gearys_c.csv",
        ground_truth="results/covariates/tables/ground_truth.csv",
        summary=report(
            "results/covariates/tables/summary.csv",
            caption="../report/summary_table.rst",
            category="Covariates (Fig. 2)",
            labels={"panel": "Fig. 2e,f", "figure": "median Geary's C per method"},
        ),
        claim_check=report(
            "results/covariates/tables/claim_check.csv",
            caption="../report/claim_check.rst",
            category="Covariates (Fig. 2)",
            labels={"panel": "Fig. 2e,f", "figure": "claim check, scVI-cc vs scVI"},
        ),
    params:
        display_names=covariates_display_names(),
        marker_tolerance=config["covariates"]["marker_tolerance"],
    log:
        "logs/covariates/aggregate_covariates.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/aggregate_covariates.py"


rule figures_covariates:
    input:
        prepared="results/covariates/data/wing_disc_prepared.h5ad",
        integrated=covariates_per_method("results/covariates/integrated/{method}.h5ad"),
        gearys_c="results/covariates/tables/gearys_c.csv",
        ground_truth="results/covariates/tables/ground_truth.csv",
    output:
        fig2d=report(
            "results/covariates/figures/fig2d_umap_scvi_vs_scvi_cc.png",
            caption="../report/fig2d_umap.rst",
            category="Covariates (Fig. 2)",
            labels={"panel": "Fig. 2d", "figure": "UMAP, scVI vs scVI-cc"},
        ),
        supp_fig1=report(
            "results/covariates/figures/supp_fig1_umap_all_methods.png",
            caption="../report/supp_fig1_umap.rst",
            category="Covariates (Fig. 2)",
            labels={"panel": "Supp. Fig. 1", "figure": "UMAP, all methods"},
        ),
        fig2e=report(
            "results/covariates/figures/fig2e_gearys_c_markers.png",
            caption="../report/fig2e_gearys_c_markers.rst",
            category="Covariates (Fig. 2)",
            labels={"panel": "Fig. 2e", "figure": "Geary's C, marker genes"},
        ),
        fig2f=report(
            "results/covariates/figures/fig2f_gearys_c_nuisance.png",
            caption="../report/fig2f_gearys_c_nuisance.rst",
            category="Covariates (Fig. 2)",
            labels={"panel": "Fig. 2f", "figure": "Geary's C, nuisance genes"},
        ),
        ground_truth=report(
            "results/covariates/figures/ground_truth_scores.png",
            caption="../report/ground_truth_scores.rst",
            category="Covariates (Fig. 2)",
            labels={"panel": "extra", "figure": "ground-truth scores"},
        ),
        fig2d_pdf="results/covariates/figures/fig2d_umap_scvi_vs_scvi_cc.pdf",
        supp_fig1_pdf="results/covariates/figures/supp_fig1_umap_all_methods.pdf",
        fig2e_pdf="results/covariates/figures/fig2e_gearys_c_markers.pdf",
        fig2f_pdf="results/covariates/figures/fig2f_gearys_c_nuisance.pdf",
        ground_truth_pdf="results/covariates/figures/ground_truth_scores.pdf",
    params:
        methods=covariates_methods(),
        display_names=covariates_display_names(),
        umap_genes=config["covariates"]["umap_genes"],
        batch_key=config["covariates"]["batch_key"],
    log:
        "logs/covariates/figures_covariates.log",
    benchmark:
        "results/covariates/benchmarks/figures_covariates.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/figures_covariates.py"
