# Paper Fig. 5 and Supp. Fig. 5: Stereoscope deconvolution of spatial spots into cell-type
# proportions. Data sets (the {dataset} wildcard): "simulated", a hippocampus-like
# single-cell reference and spots built from other cells of the same simulated world
# (scprob.data.simulate.hippocampus), so each spot's true proportions are known; and
# "real", a Visium hippocampus section with a labelled reference in spacexr's layout
# (deconvolution.real, when configured). The RNA model learns one NB signature per cell
# type; the spatial model explains each spot as a mixture of them
# (scprob.models.stereoscope). Every simulated run (RNA epochs x spatial epochs, from
# config) is scored per cell type against the truth; the real runs are mapped and compared
# with the peers.


rule simulate_hippocampus:
    output:
        reference="results/deconvolution/data/simulated/reference.h5ad",
        spots="results/deconvolution/data/simulated/spots.h5ad",
    params:
        settings=config["deconvolution"]["simulate"],
        seed=config["seed"],
    log:
        "logs/deconvolution/simulate_hippocampus.log",
    benchmark:
        "results/deconvolution/benchmarks/simulate_hippocampus.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/simulate_hippocampus.py"


rule train_rna_stereoscope:
    input:
        reference="results/deconvolution/data/{dataset}/reference.h5ad",
    output:
        model=directory("results/deconvolution/models/{dataset}/rna_{rna_epochs}"),
        timing="results/deconvolution/timings/{dataset}/rna_{rna_epochs}.json",
    wildcard_constraints:
        dataset=DECONVOLUTION_DATASETS,
        rna_epochs=r"[0-9]+",
    params:
        labels_key=config["deconvolution"]["labels_key"],
        settings=config["deconvolution"]["rna"],
        seed=config["seed"],
    threads: config["deconvolution"]["threads"]
    log:
        "logs/deconvolution/{dataset}/train_rna_stereoscope_{rna_epochs}.log",
    benchmark:
        "results/deconvolution/benchmarks/{dataset}/train_rna_stereoscope_{rna_epochs}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/train_rna_stereoscope.py"


rule deconvolve_spots:
    input:
        spots="results/deconvolution/data/{dataset}/spots.h5ad",
        reference="results/deconvolution/data/{dataset}/reference.h5ad",
        model="results/deconvolution/models/{dataset}/rna_{rna_epochs}",
        rna_timing="results/deconvolution/timings/{dataset}/rna_{rna_epochs}.json",
    output:
        proportions=(
            "results/deconvolution/proportions/{dataset}/scprob_{rna_epochs}_{spatial_epochs}.csv"
        ),
        timing="results/deconvolution/timings/{dataset}/scprob_{rna_epochs}_{spatial_epochs}.json",
    wildcard_constraints:
        dataset=DECONVOLUTION_DATASETS,
        rna_epochs=r"[0-9]+",
        spatial_epochs=r"[0-9]+",
    params:
        settings=config["deconvolution"]["spatial"],
        seed=config["seed"],
    threads: config["deconvolution"]["threads"]
    log:
        "logs/deconvolution/{dataset}/deconvolve_spots_{rna_epochs}_{spatial_epochs}.log",
    benchmark:
        "results/deconvolution/benchmarks/{dataset}/deconvolve_spots_{rna_epochs}_{spatial_epochs}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/deconvolve_spots.py"


# A peer's Stereoscope on the same data and epochs, in its own environment (`make
# peer-env`): scvi-tools 1.4.2 (.venv-peer, workflow/scripts/peer_scvi_tools_stereoscope.py)
# or the original stereoscope 0.3 CLI (.venv-stereoscope, envs/stereoscope.lock). Runs only
# for the peers listed in deconvolution.peers, with `peer: true` (config/peer.yaml).
rule deconvolve_spots_peer:
    input:
        spots="results/deconvolution/data/{dataset}/spots.h5ad",
        reference="results/deconvolution/data/{dataset}/reference.h5ad",
    output:
        proportions=(
            "results/deconvolution/proportions/{dataset}/{peer}_{rna_epochs}_{spatial_epochs}.csv"
        ),
        timing="results/deconvolution/timings/{dataset}/{peer}_{rna_epochs}_{spatial_epochs}.json",
    wildcard_constraints:
        dataset=DECONVOLUTION_DATASETS,
        peer="|".join(DECONVOLUTION_PEERS),
        rna_epochs=r"[0-9]+",
        spatial_epochs=r"[0-9]+",
    params:
        settings=deconvolution_peer_settings(),
        seed=config["seed"],
    threads: config["deconvolution"]["threads"]
    log:
        "logs/deconvolution/{dataset}/deconvolve_spots_{peer}_{rna_epochs}_{spatial_epochs}.log",
    benchmark:
        "results/deconvolution/benchmarks/{dataset}/deconvolve_spots_{peer}_{rna_epochs}_{spatial_epochs}.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/deconvolve_spots_peer.py"


rule evaluate_deconvolution:
    input:
        spots="results/deconvolution/data/simulated/spots.h5ad",
        proportions=deconvolution_per_run(
            "results/deconvolution/proportions/simulated/{run}.csv"
        ),
        timings=deconvolution_per_run("results/deconvolution/timings/simulated/{run}.json"),
    output:
        accuracy=report(
            "results/deconvolution/tables/accuracy.csv",
            caption="../report/deconvolution_accuracy.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Fig. 5", "figure": "per-type Spearman and Pearson"},
        ),
        convergence=report(
            "results/deconvolution/tables/convergence.csv",
            caption="../report/deconvolution_convergence.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Supp. Fig. 5", "figure": "convergence table"},
        ),
        agreement=report(
            "results/deconvolution/tables/agreement.csv",
            caption="../report/deconvolution_agreement.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Supp. Fig. 5", "figure": "agreement with the peers"},
        ),
        claim_check=report(
            "results/deconvolution/tables/claim_check.csv",
            caption="../report/deconvolution_claim_check.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Fig. 5", "figure": "claim check"},
        ),
    params:
        runs=deconvolution_runs(),
        method="scprob",
        peers=study_peers("deconvolution"),
        targets=config["deconvolution"]["targets"],
    log:
        "logs/deconvolution/evaluate_deconvolution.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/evaluate_deconvolution.py"


rule figures_deconvolution:
    input:
        spots="results/deconvolution/data/simulated/spots.h5ad",
        proportions=deconvolution_map_runs(),
        accuracy="results/deconvolution/tables/accuracy.csv",
        convergence="results/deconvolution/tables/convergence.csv",
    output:
        maps_png=report(
            "results/deconvolution/figures/fig5g_proportion_maps.png",
            caption="../report/deconvolution_maps.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Fig. 5g", "figure": "proportion maps"},
        ),
        maps_pdf="results/deconvolution/figures/fig5g_proportion_maps.pdf",
        convergence_png=report(
            "results/deconvolution/figures/supp_fig5_convergence.png",
            caption="../report/deconvolution_convergence.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Supp. Fig. 5", "figure": "convergence"},
        ),
        convergence_pdf="results/deconvolution/figures/supp_fig5_convergence.pdf",
        per_type_png=report(
            "results/deconvolution/figures/fig5_per_type_spearman.png",
            caption="../report/deconvolution_accuracy.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Fig. 5", "figure": "per-type Spearman"},
        ),
        per_type_pdf="results/deconvolution/figures/fig5_per_type_spearman.pdf",
    params:
        map_types=config["deconvolution"]["map_types"],
        map_labels=deconvolution_map_labels(),
        targets=config["deconvolution"]["targets"],
    log:
        "logs/deconvolution/figures_deconvolution.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/figures_deconvolution.py"


# The real pair as h5ad, so every fitting rule reads it like the simulated one: from
# spacexr's CSV layout, or from Space Ranger files and an h5ad reference prepared as in the
# paper (format visium).
if DECONVOLUTION_REAL_FORMAT == "visium":

    rule read_visium_pair:
        input:
            unpack(deconvolution_real_inputs),
        output:
            reference="results/deconvolution/data/real/reference.h5ad",
            spots="results/deconvolution/data/real/spots.h5ad",
        params:
            settings=config["deconvolution"]["real"]["visium"],
        log:
            "logs/deconvolution/real/read_visium_pair.log",
        benchmark:
            "results/deconvolution/benchmarks/real/read_visium_pair.tsv"
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/read_visium_pair.py"

else:

    rule read_spacexr_pair:
        input:
            unpack(deconvolution_real_inputs),
        output:
            reference="results/deconvolution/data/real/reference.h5ad",
            spots="results/deconvolution/data/real/spots.h5ad",
        params:
            reference_folder=lambda wildcards, input: Path(input.reference_counts).parent,
            spatial_folder=lambda wildcards, input: Path(input.spatial_counts).parent,
        log:
            "logs/deconvolution/real/read_spacexr_pair.log",
        conda:
            "../../envs/scprob.yaml"
        script:
            "../scripts/read_spacexr_pair.py"


rule figures_deconvolution_real:
    input:
        spots="results/deconvolution/data/real/spots.h5ad",
        proportions=deconvolution_real_runs(),
    output:
        maps_png=report(
            "results/deconvolution/figures/fig5g_real_proportion_maps.png",
            caption="../report/deconvolution_real.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Fig. 5g", "figure": "proportion maps, real Visium"},
        ),
        maps_pdf="results/deconvolution/figures/fig5g_real_proportion_maps.pdf",
        agreement=report(
            "results/deconvolution/tables/real_agreement.csv",
            caption="../report/deconvolution_real.rst",
            category="Deconvolution (Fig. 5)",
            labels={"panel": "Supp. Fig. 5", "figure": "agreement with the peers, real"},
        ),
    params:
        methods=deconvolution_methods(),
        labels=deconvolution_real_labels(),
        map_types=deconvolution_real_setting("map_types"),
    log:
        "logs/deconvolution/real/figures_deconvolution_real.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/figures_deconvolution_real.py"
