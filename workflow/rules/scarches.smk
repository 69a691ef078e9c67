# Paper Fig. 3 and Supp. Fig. 3: totalVI reference mapping with scArches. A totalVI reference
# model of a PBMC CITE-seq atlas is extended to a COVID-19 query by architecture surgery,
# cell types are transferred with a random forest on the latent space, and everything is
# compared with de novo totalVI fitted on reference and query together. Data: simulated
# (scprob.data.simulate.cite_seq), so the query's labels are known and held out; or real
# (config/real.yaml), labels gated on each data set's ADTs.


# The study's two data sets: simulated (scarches.simulate), or real CITE-seq data
# (scarches.real) with cell types gated on the ADTs.
if not SCARCHES_REAL:

    rule simulate_scarches:
        output:
            reference="results/scarches/data/reference.h5ad",
            query="results/scarches/data/query.h5ad",
        params:
            reference=config["scarches"]["simulate"]["reference"],
            query=config["scarches"]["simulate"]["query"],
            seed=config["seed"],
        log:
            "logs/scarches/simulate_scarches.log",
        benchmark:
            "results/scarches/benchmarks/simulate_scarches.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/simulate_scarches.py"

else:

    rule read_cite_seq_pair:
        input:
            unpack(scarches_real_inputs),
        output:
            reference="results/scarches/data/reference.h5ad",
            query="results/scarches/data/query.h5ad",
        params:
            real=config["scarches"]["real"],
            seed=config["seed"],
        log:
            "logs/scarches/read_cite_seq_pair.log",
        benchmark:
            "results/scarches/benchmarks/read_cite_seq_pair.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/read_cite_seq_pair.py"


rule train_totalvi_scarches:
    input:
        unpack(scarches_fit_inputs),
    output:
        model=directory("results/scarches/models/{fit}"),
        latent="results/scarches/data/{fit}_latent.h5ad",
        history="results/scarches/tables/{fit}_training_history.csv",
        timing="results/scarches/timings/{fit}.json",
    wildcard_constraints:
        fit="|".join(SCARCHES_FITS),
    params:
        architecture=config["scarches"]["totalvi"],
        # de novo totalVI keeps every setting of the reference (paper Methods).
        training=config["scarches"]["reference_training"],
        batch_key=config["scarches"]["batch_key"],
        refine_steps=config["scarches"]["refine_steps"],
        seed=config["seed"],
        accelerator=config["scarches"]["accelerator"],
    threads: config["scarches"]["threads"]
    # The longest single-thread jobs of the run start first, so that no core idles at
    # its end waiting for them (the timed scaling jobs need every core).
    priority: 20
    log:
        "logs/scarches/train_totalvi_{fit}.log",
    benchmark:
        "results/scarches/benchmarks/train_totalvi_{fit}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/train_totalvi_scarches.py"


rule evaluate_reference_totalvi:
    input:
        reference="results/scarches/data/reference.h5ad",
        model="results/scarches/models/reference",
        latent="results/scarches/data/reference_latent.h5ad",
    output:
        clusters=report(
            "results/scarches/tables/reference_clusters.csv",
            caption="../report/scarches_reference_totalvi.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Fig. 3a", "figure": "reference clusters vs cell types"},
        ),
        foreground="results/scarches/tables/reference_protein_foreground.csv",
        figure=report(
            "results/scarches/figures/reference_totalvi.png",
            caption="../report/scarches_reference_totalvi.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Fig. 3a", "figure": "reference totalVI"},
        ),
        figure_pdf="results/scarches/figures/reference_totalvi.pdf",
    params:
        label_key=config["scarches"]["label_key"],
        n_neighbors=config["scarches"]["n_neighbors"],
        seed=config["seed"],
        accelerator=config["scarches"]["accelerator"],
    threads: config["scarches"]["threads"]
    log:
        "logs/scarches/evaluate_reference_totalvi.log",
    benchmark:
        "results/scarches/benchmarks/evaluate_reference_totalvi.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/evaluate_reference_totalvi.py"


rule map_query_scarches:
    input:
        reference="results/scarches/data/reference.h5ad",
        query="results/scarches/data/query.h5ad",
        model="results/scarches/models/reference",
        reference_latent="results/scarches/data/reference_latent.h5ad",
    output:
        model=directory("results/scarches/models/query"),
        latent="results/scarches/data/scarches_latent.h5ad",
        history="results/scarches/tables/query_training_history.csv",
        timing="results/scarches/timings/query.json",
    params:
        training=config["scarches"]["query_training"],
        freeze_dropout=config["scarches"]["freeze_dropout"],
        min_gene_overlap=config["scarches"]["min_gene_overlap"],
        refine_steps=config["scarches"]["refine_steps"],
        seed=config["seed"],
        accelerator=config["scarches"]["accelerator"],
    threads: config["scarches"]["threads"]
    log:
        "logs/scarches/map_query_scarches.log",
    benchmark:
        "results/scarches/benchmarks/map_query_scarches.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/map_query_scarches.py"


rule label_transfer:
    input:
        latent="results/scarches/data/{method}_latent.h5ad",
    output:
        predictions="results/scarches/tables/predictions_{method}.csv",
    wildcard_constraints:
        method="|".join(SCARCHES_METHODS),
    params:
        label_key=config["scarches"]["label_key"],
        n_estimators=config["scarches"]["random_forest"]["n_estimators"],
        seed=config["seed"],
    threads: config["scarches"]["threads"]
    log:
        "logs/scarches/label_transfer_{method}.log",
    benchmark:
        "results/scarches/benchmarks/label_transfer_{method}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/label_transfer.py"


rule embed_scarches:
    input:
        latent="results/scarches/data/scarches_latent.h5ad",
    output:
        umap="results/scarches/data/scarches_umap.csv",
    params:
        n_neighbors=config["scarches"]["n_neighbors"],
        seed=config["seed"],
    threads: config["scarches"]["threads"]
    log:
        "logs/scarches/embed_scarches.log",
    benchmark:
        "results/scarches/benchmarks/embed_scarches.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/embed_scarches.py"


rule aggregate_scarches:
    input:
        scarches="results/scarches/tables/predictions_scarches.csv",
        de_novo="results/scarches/tables/predictions_de_novo.csv",
        timing_reference="results/scarches/timings/reference.json",
        timing_query="results/scarches/timings/query.json",
        timing_de_novo="results/scarches/timings/de_novo.json",
        benchmark_reference="results/scarches/benchmarks/train_totalvi_reference.tsv",
        benchmark_query="results/scarches/benchmarks/map_query_scarches.tsv",
        benchmark_de_novo="results/scarches/benchmarks/train_totalvi_de_novo.tsv",
        query="results/scarches/data/query.h5ad",
    output:
        scores=report(
            "results/scarches/tables/label_transfer_scores.csv",
            caption="../report/scarches_scores.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "extra", "figure": "label-transfer scores"},
        ),
        confusion_scarches="results/scarches/tables/confusion_scarches.csv",
        confusion_de_novo="results/scarches/tables/confusion_de_novo.csv",
        agreement="results/scarches/tables/agreement.csv",
        rare_subsets="results/scarches/tables/rare_subsets.csv",
        runtime="results/scarches/tables/runtime.csv",
        summary=report(
            "results/scarches/tables/summary.csv",
            caption="../report/scarches_summary.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Fig. 3, Supp. Fig. 3h", "figure": "ours vs the paper"},
        ),
        claim_check=report(
            "results/scarches/tables/claim_check.csv",
            caption="../report/scarches_claim_check.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Fig. 3", "figure": "claim check, scArches vs de novo"},
        ),
    params:
        rare_subsets=config["scarches"]["rare_subsets"],
        accuracy_tolerance=config["scarches"]["accuracy_tolerance"],
        min_speedup=config["scarches"]["min_speedup"],
    log:
        "logs/scarches/aggregate_scarches.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/aggregate_scarches.py"


rule figures_scarches:
    input:
        umap="results/scarches/data/scarches_umap.csv",
        predictions="results/scarches/tables/predictions_scarches.csv",
        confusion="results/scarches/tables/confusion_scarches.csv",
        agreement="results/scarches/tables/agreement.csv",
        rare_subsets="results/scarches/tables/rare_subsets.csv",
        runtime="results/scarches/tables/runtime.csv",
    output:
        fig3b=report(
            "results/scarches/figures/fig3b_umap_labels.png",
            caption="../report/scarches_fig3b_umap_labels.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Fig. 3b", "figure": "UMAP, cell types"},
        ),
        fig3c=report(
            "results/scarches/figures/fig3c_umap_dataset.png",
            caption="../report/scarches_fig3c_umap_dataset.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Fig. 3c", "figure": "UMAP, dataset"},
        ),
        fig3d=report(
            "results/scarches/figures/fig3d_confusion_scarches.png",
            caption="../report/scarches_fig3d_confusion.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Fig. 3d", "figure": "confusion, scArches vs held-out"},
        ),
        fig3f_g=report(
            "results/scarches/figures/fig3f_g_rare_subsets.png",
            caption="../report/scarches_fig3f_g_rare_subsets.rst",
            category="scArches (Fig. 3)",
            labels={
                "panel": "Fig. 3f,g",
                "figure": " and ".join(config["scarches"]["rare_subsets"]) + " per donor",
            },
        ),
        fig3h=report(
            "results/scarches/figures/fig3h_agreement.png",
            caption="../report/scarches_fig3h_agreement.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Fig. 3h", "figure": "agreement, scArches vs de novo"},
        ),
        runtime=report(
            "results/scarches/figures/runtime.png",
            caption="../report/scarches_runtime.rst",
            category="scArches (Fig. 3)",
            labels={"panel": "Supp. Fig. 3h", "figure": "runtime"},
        ),
        fig3b_pdf="results/scarches/figures/fig3b_umap_labels.pdf",
        fig3c_pdf="results/scarches/figures/fig3c_umap_dataset.pdf",
        fig3d_pdf="results/scarches/figures/fig3d_confusion_scarches.pdf",
        fig3f_g_pdf="results/scarches/figures/fig3f_g_rare_subsets.pdf",
        fig3h_pdf="results/scarches/figures/fig3h_agreement.pdf",
        runtime_pdf="results/scarches/figures/runtime.pdf",
    params:
        rare_subsets=config["scarches"]["rare_subsets"],
        conditions=scarches_conditions(),
    log:
        "logs/scarches/figures_scarches.log",
    benchmark:
        "results/scarches/benchmarks/figures_scarches.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/figures_scarches.py"
