# Paper Supp. Fig. 6: CellAssign, marker-based cell-type annotation by minibatch EM
# (scprob.models.cellassign). Data sets (the {dataset} wildcard): "follicular" and "hgsc",
# tumour-like simulations on the CellAssign paper's own marker lists
# (scprob.data.simulate.tumour_markers); "pbmc_<n>", the runtime series of PBMC-like data
# (23 markers x 5 types), each a subsample of the largest (scprob.data.simulate.
# pbmc_markers); "cellbench_<technology>", real cell lines with a genotype truth
# (cellassign.real, when configured). With cellassign.paper_data, "follicular", "hgsc" and
# "pbmc_<n>" are the paper's real data sets instead (the published labels as truth, the
# first n of the 10x 68k PBMCs). Every data set is annotated by ours, the marker-sum
# baseline and the configured peers, and scored against its truth.


# The simulated panels' data: simulated, or the paper's real data sets under the same
# names (cellassign.paper_data).
if not CELLASSIGN_PAPER_DATA:

    rule simulate_tumour_markers:
        output:
            data="results/cellassign/data/{dataset}.h5ad",
            markers="results/cellassign/markers/{dataset}.csv",
        wildcard_constraints:
            dataset="|".join(CELLASSIGN_SIMULATED) or "(?!)",
        params:
            settings=cellassign_simulation_settings,
            seed=config["seed"],
        log:
            "logs/cellassign/simulate_{dataset}.log",
        benchmark:
            "results/cellassign/benchmarks/simulate_{dataset}.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/simulate_tumour_markers.py"


    rule simulate_pbmc_markers:
        output:
            data=expand(
                "results/cellassign/data/{dataset}.h5ad", dataset=cellassign_runtime_datasets()
            ),
            markers="results/cellassign/markers/pbmc.csv",
        params:
            sizes=sorted(cellassign_runtime_datasets().values()),
            seed=config["seed"],
        log:
            "logs/cellassign/simulate_pbmc_markers.log",
        benchmark:
            "results/cellassign/benchmarks/simulate_pbmc_markers.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/simulate_pbmc_markers.py"

else:

    rule read_cellassign_paper_data:
        input:
            unpack(cellassign_paper_inputs),
        output:
            data="results/cellassign/data/{dataset}.h5ad",
            markers="results/cellassign/markers/{dataset}.csv",
        wildcard_constraints:
            dataset="|".join(CELLASSIGN_SIMULATED) or "(?!)",
        params:
            truth_key=config["cellassign"]["paper_data"]["truth_key"],
        log:
            "logs/cellassign/read_{dataset}.log",
        benchmark:
            "results/cellassign/benchmarks/read_{dataset}.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/read_cellassign_paper_data.py"

    rule read_pbmc_68k:
        input:
            archive=cellassign_paper_files()["pbmc_tar"],
            follicular_markers=cellassign_paper_files()["follicular_markers"],
        output:
            data=expand(
                "results/cellassign/data/{dataset}.h5ad",
                dataset=cellassign_runtime_datasets(),
            ),
            markers="results/cellassign/markers/pbmc.csv",
        params:
            sizes=sorted(cellassign_runtime_datasets().values()),
        log:
            "logs/cellassign/read_pbmc_68k.log",
        benchmark:
            "results/cellassign/benchmarks/read_pbmc_68k.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/read_pbmc_68k.py"


rule read_cellbench:
    input:
        unpack(cellassign_real_inputs),
    output:
        data="results/cellassign/data/cellbench_{technology}.h5ad",
        markers="results/cellassign/markers/cellbench_{technology}.csv",
    wildcard_constraints:
        technology="celseq2|dropseq",
    log:
        "logs/cellassign/read_cellbench_{technology}.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/read_cellbench.py"


rule annotate_cells:
    input:
        data="results/cellassign/data/{dataset}.h5ad",
        markers=cellassign_markers,
    output:
        probabilities="results/cellassign/predictions/{dataset}/{method}.csv",
        timing="results/cellassign/timings/{dataset}/{method}.json",
    wildcard_constraints:
        method="|".join(CELLASSIGN_METHODS),
    params:
        design_key=cellassign_design_key,
        settings=config["cellassign"]["train"],
        seed=config["seed"],
    threads: config["cellassign"]["threads"]
    log:
        "logs/cellassign/{dataset}/annotate_{method}.log",
    benchmark:
        "results/cellassign/benchmarks/{dataset}/annotate_{method}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/annotate_cells.py"


# scvi-tools' CellAssign with its defaults on the same files, in its own environment (`make
# peer-env`; workflow/scripts/peer_scvi_tools_cellassign.py). Runs only for the peers
# listed in cellassign.peers, with `peer: true` (config/peer.yaml).
rule annotate_cells_peer:
    input:
        data="results/cellassign/data/{dataset}.h5ad",
        markers=cellassign_markers,
    output:
        probabilities="results/cellassign/predictions/{dataset}/{peer}.csv",
        timing="results/cellassign/timings/{dataset}/{peer}.json",
    wildcard_constraints:
        peer="|".join(CELLASSIGN_PEERS),
    params:
        design_key=cellassign_design_key,
        settings=cellassign_peer_settings(),
        seed=config["seed"],
    threads: config["cellassign"]["threads"]
    log:
        "logs/cellassign/{dataset}/annotate_{peer}.log",
    benchmark:
        "results/cellassign/benchmarks/{dataset}/annotate_{peer}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/annotate_cells_peer.py"


# Why the published port collapses types on small data: its initialisation and its
# optimisation swapped into ours one at a time (scprob.bench.cellassign.ablation).
rule cellassign_ablation:
    output:
        table=report(
            "results/cellassign/tables/ablation.csv",
            caption="../report/cellassign_ablation.rst",
            category="CellAssign (Supp. Fig. 6)",
            labels={"panel": "Supp. Fig. 6g", "figure": "small-data ablation table"},
        ),
    params:
        settings=config["cellassign"].get("ablation"),
    threads: config["cellassign"]["threads"]
    log:
        "logs/cellassign/ablation.log",
    benchmark:
        "results/cellassign/benchmarks/ablation.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/cellassign_ablation.py"


rule evaluate_cellassign:
    input:
        data=expand("results/cellassign/data/{dataset}.h5ad", dataset=cellassign_datasets()),
        probabilities=cellassign_per_run("results/cellassign/predictions/{dataset}/{method}.csv"),
        timings=cellassign_per_run("results/cellassign/timings/{dataset}/{method}.json"),
        markers=expand(
            "results/cellassign/markers/{name}.csv",
            name=[
                *CELLASSIGN_SIMULATED,
                *(["pbmc"] if cellassign_runtime_datasets() else []),
                *cellassign_real_datasets(),
            ],
        ),
    output:
        scores=report(
            "results/cellassign/tables/scores.csv",
            caption="../report/cellassign_scores.rst",
            category="CellAssign (Supp. Fig. 6)",
            labels={"panel": "Supp. Fig. 6", "figure": "accuracy and macro-F1"},
        ),
        confusion="results/cellassign/tables/confusion.csv",
        runtime=report(
            "results/cellassign/tables/runtime.csv",
            caption="../report/cellassign_runtime.rst",
            category="CellAssign (Supp. Fig. 6)",
            labels={"panel": "Supp. Fig. 6g", "figure": "runtime table"},
        ),
        agreement="results/cellassign/tables/agreement.csv",
        claim_check=report(
            "results/cellassign/tables/claim_check.csv",
            caption="../report/cellassign_claim_check.rst",
            category="CellAssign (Supp. Fig. 6)",
            labels={"panel": "Supp. Fig. 6", "figure": "claim check"},
        ),
    params:
        runs=cellassign_runs(),
        datasets=cellassign_datasets(),
        runtime_datasets=cellassign_runtime_datasets(),
        # Each simulation and real data set must reach min_accuracy.
        accuracy_datasets=[*CELLASSIGN_SIMULATED, *cellassign_real_datasets()],
        min_accuracy=config["cellassign"]["min_accuracy"],
    log:
        "logs/cellassign/evaluate_cellassign.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/evaluate_cellassign.py"


rule figures_cellassign:
    input:
        scores="results/cellassign/tables/scores.csv",
        confusion="results/cellassign/tables/confusion.csv",
        runtime="results/cellassign/tables/runtime.csv",
        ablation="results/cellassign/tables/ablation.csv",
    output:
        confusion_png=report(
            "results/cellassign/figures/supp_fig6cf_confusion.png",
            caption="../report/cellassign_confusion.rst",
            category="CellAssign (Supp. Fig. 6)",
            labels={"panel": "Supp. Fig. 6c, f", "figure": "confusion matrices"},
        ),
        confusion_pdf="results/cellassign/figures/supp_fig6cf_confusion.pdf",
        runtime_png=report(
            "results/cellassign/figures/supp_fig6g_runtime.png",
            caption="../report/cellassign_runtime.rst",
            category="CellAssign (Supp. Fig. 6)",
            labels={"panel": "Supp. Fig. 6g", "figure": "runtime and accuracy"},
        ),
        runtime_pdf="results/cellassign/figures/supp_fig6g_runtime.pdf",
        ablation_png=report(
            "results/cellassign/figures/small_data_ablation.png",
            caption="../report/cellassign_ablation.rst",
            category="CellAssign (Supp. Fig. 6)",
            labels={"panel": "Supp. Fig. 6g", "figure": "small-data ablation"},
        ),
        ablation_pdf="results/cellassign/figures/small_data_ablation.pdf",
    params:
        simulated=CELLASSIGN_SIMULATED,
        min_accuracy=config["cellassign"]["min_accuracy"],
    log:
        "logs/cellassign/figures_cellassign.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/figures_cellassign.py"


rule figures_cellassign_real:
    input:
        confusion="results/cellassign/tables/confusion.csv",
        scores="results/cellassign/tables/scores.csv",
    output:
        png=report(
            "results/cellassign/figures/cellbench_confusion.png",
            caption="../report/cellassign_cellbench.rst",
            category="CellAssign (Supp. Fig. 6)",
            labels={"panel": "Supp. Fig. 6 (real data)", "figure": "CellBench confusion"},
        ),
        pdf="results/cellassign/figures/cellbench_confusion.pdf",
    params:
        datasets=cellassign_real_datasets(),
    log:
        "logs/cellassign/figures_cellassign_real.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/figures_cellassign_real.py"
