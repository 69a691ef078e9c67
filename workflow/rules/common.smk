# Helpers shared by the rule files (names, paths, the targets of each study).
# Rule files hold rules only; anything computed lives here.

import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger


# Every study, in the order its rules are read; config `studies` picks from these.
STUDIES = [
    "covariates",
    "scaling",
    "scarches",
    "benchmarks",
    "complexity",
    "deconvolution",
    "cellassign",
]
# Studies whose jobs read another study's outputs.
STUDY_NEEDS = {"benchmarks": ["scaling"]}


def rules_needed(studies):
    """The studies whose rule files a run of ``studies`` reads, in STUDIES order."""
    needed = set(studies)
    for study in studies:
        needed.update(STUDY_NEEDS.get(study, []))
    return [study for study in STUDIES if study in needed]


def study_included(study):
    """Whether the run reads ``study``'s rules (its settings are then checked up front)."""
    return study in rules_needed(config["studies"])


def reads_real_data(study):
    """Whether ``study`` reads its ``real`` block's data instead of simulating (False when
    the run does not include it); a ValueError unless exactly one of ``<study>.simulate``
    and ``<study>.real`` is set."""
    if not study_included(study):
        return False
    settings = config[study]
    if (settings["simulate"] is None) == (settings["real"] is None):
        raise ValueError(
            f"{study} needs exactly one of {study}.simulate and {study}.real: set the "
            "other to null."
        )
    return settings["real"] is not None


def study_targets(study):
    """Every final output of one study (its ``*_targets`` function, defined below)."""
    return {
        "covariates": covariates_targets,
        "scaling": scaling_targets,
        "scarches": scarches_targets,
        "benchmarks": benchmark_targets,
        "complexity": complexity_targets,
        "deconvolution": deconvolution_targets,
        "cellassign": cellassign_targets,
    }[study]()


def peer_python(peer):
    """A peer environment's interpreter as an absolute path (a relative `peer_python` is
    read from the repository root)."""
    return str(Path(workflow.basedir) / config["peer_python"][peer])


def study_peers(study):
    """The peers a study runs beside ours: its `peers` list with `peer: true`, else none."""
    return list(config[study]["peers"]) if config["peer"] else []


def every_core():
    """Every core of the run, for the timed jobs: nothing else then runs beside them.

    Runs that start no local job give no core count (`--report`, a cluster run without
    --cores, where the SLURM profile's set-threads decides); one thread there.
    """
    try:
        return workflow.cores
    except WorkflowError:
        return 1


# Paper Fig. 2 (covariates study) -------------------------------------------------------

# Method wildcard value -> the name the paper's figures use.
COVARIATES_DISPLAY_NAMES = {
    "scvi": "scVI",
    "scvi_cc": "scVI-cc",
    "regress_bbknn": "regress-bbknn",
    "regress_harmony": "regress-harmony",
}
COVARIATES_SCVI_METHODS = ["scvi", "scvi_cc"]
COVARIATES_BASELINES = ["regress_bbknn", "regress_harmony"]

# Columns of the ground truth that the ground-truth scores read: the biology to keep and
# the nuisance to remove. Simulated: the cell state, the cell-cycle scores and sex drawn by
# simulate_wing_disc. Real: the authors' clusters (as cell_state) and sex call
# (read_wing_disc); no continuous nuisance is known there.
COVARIATES_SIMULATED_TRUTH = {
    "state_key": "cell_state",
    "nuisance_continuous_keys": ["cycle_score", "s_score", "g2m_score"],
    "nuisance_categorical_keys": ["sex"],
}
COVARIATES_REAL_TRUTH = {
    "state_key": "cell_state",
    "nuisance_continuous_keys": [],
    "nuisance_categorical_keys": ["sex"],
}

COVARIATES_REAL = reads_real_data("covariates")
COVARIATES_TRUTH = COVARIATES_REAL_TRUTH if COVARIATES_REAL else COVARIATES_SIMULATED_TRUTH


def covariates_real_inputs(wildcards):
    """The real matrix and metadata (declared downloads, or under covariates.real.folder)."""
    real = config["covariates"]["real"]
    files = {"counts": real["counts_h5ad"], "metadata": real["metadata_csv"]}
    return real_data_files(real["folder"], files)

# The panels of the figures rule, by file stem.
COVARIATES_FIGURES = [
    "fig2d_umap_scvi_vs_scvi_cc",
    "supp_fig1_umap_all_methods",
    "fig2e_gearys_c_markers",
    "fig2f_gearys_c_nuisance",
    "ground_truth_scores",
]


def covariates_methods():
    """The methods the config asks for, in its order."""
    return list(config["covariates"]["methods"])


def covariates_display_names():
    """Display names of the configured methods, for the scripts that label plots."""
    return {m: COVARIATES_DISPLAY_NAMES[m] for m in covariates_methods()}


def covariates_scvi_settings():
    """The scvi block of the config plus the shared seed, for the training script."""
    return {**config["covariates"]["scvi"], "seed": config["seed"]}


def covariates_per_method(pattern):
    """``pattern`` (with ``{method}``) expanded over the configured methods."""
    return expand(pattern, method=covariates_methods())


def covariates_targets():
    """Every final output of the covariates study."""
    return [
        "results/covariates/tables/supp_table2_genes.csv",
        "results/covariates/tables/gearys_c.csv",
        "results/covariates/tables/ground_truth.csv",
        "results/covariates/tables/summary.csv",
        "results/covariates/tables/claim_check.csv",
        *expand(
            "results/covariates/tables/{method}_training_history.csv",
            method=[m for m in covariates_methods() if m in COVARIATES_SCVI_METHODS],
        ),
        *expand(
            "results/covariates/figures/{stem}.{ext}",
            stem=COVARIATES_FIGURES,
            ext=["png", "pdf"],
        ),
    ]


# Paper Supp. Fig. 2 (runtime study) -----------------------------------------------------

# Method wildcard value -> the name the paper's figure uses.
SCALING_DISPLAY_NAMES = {
    "scvi": "scVI",
    "regress": "regress",
    "regress_bbknn": "regress-bbknn",
    "regress_harmony": "regress-harmony",
}
SCALING_BASELINES = ["regress", "regress_bbknn", "regress_harmony"]

# The covariates of the (simulated) Heart Cell Atlas, all of which the paper gave every
# method: 2 categorical, and 10 continuous (2 measured, 8 standard-normal noise).
SCALING_CATEGORICAL_KEYS = ["cell_source", "donor"]
# The 8 standard-normal covariates (drawn by the simulation, added to a real atlas).
SCALING_NOISE_KEYS = [f"cont_cov_{i}" for i in range(1, 9)]
SCALING_CONTINUOUS_KEYS = [
    "percent_mito",
    "percent_ribo",
    *SCALING_NOISE_KEYS,
]


def check_scaling_config(scaling):
    """Relations between scaling keys that the schema cannot express; a ValueError names
    the keys and the fix."""
    if scaling["simulate"] and scaling["n_top_genes"] > scaling["simulate"]["n_genes"]:
        raise ValueError(
            f"scaling.n_top_genes ({scaling['n_top_genes']}) exceeds "
            f"scaling.simulate.n_genes ({scaling['simulate']['n_genes']}); lower it or "
            "simulate more genes."
        )
    if scaling["n_pcs"] >= min(scaling["n_top_genes"], min(scaling["n_cells"])):
        raise ValueError(
            f"scaling.n_pcs ({scaling['n_pcs']}) must be below scaling.n_top_genes and "
            "every scaling.n_cells."
        )
    if 0 < scaling["warmup_cells"] <= scaling["n_pcs"]:
        raise ValueError(
            f"scaling.warmup_cells ({scaling['warmup_cells']}) must be 0 (no warm-up) or "
            f"above scaling.n_pcs ({scaling['n_pcs']}): the warm-up runs PCA too."
        )
    past_plateau = [n for n in scaling["n_cells"] if n >= scaling["plateau_cells"]]
    if len(set(past_plateau)) < 2:
        raise ValueError(
            f"scaling.n_cells ({scaling['n_cells']}) needs two sizes of at least "
            f"scaling.plateau_cells ({scaling['plateau_cells']}) for the claim check: add "
            "a larger size or lower plateau_cells."
        )


SCALING_REAL = reads_real_data("scaling")
if study_included("scaling"):
    check_scaling_config(config["scaling"])


def scaling_atlas():
    """The atlas every subsample is drawn from: the simulation's, or the real file
    (a declared download, or under scaling.real.folder)."""
    if not SCALING_REAL:
        return "results/scaling/data/heart_atlas.h5ad"
    real = config["scaling"]["real"]
    return real_data_files(real["folder"], {"atlas": real["h5ad"]})["atlas"]


def scaling_hvg_batch_key():
    return config["scaling"]["real"]["hvg_batch_key"] if SCALING_REAL else None


def scaling_sizes():
    """The configured subsample sizes, smallest first."""
    return sorted(config["scaling"]["n_cells"])


def scaling_atlas_cells():
    """Cells of the simulated atlas: the largest subsample (which is then all of it)."""
    return max(config["scaling"]["n_cells"])


def scaling_methods():
    """The methods the config asks for, in its order."""
    return list(config["scaling"]["methods"])


def scaling_display_names():
    """Display names of the configured methods, for the table and the figure."""
    return {m: SCALING_DISPLAY_NAMES[m] for m in scaling_methods()}


def scaling_subsamples():
    """The subsamples of every size, smallest first: the input of each timing job."""
    return scaling_per_size("results/scaling/data/heart_{n_cells}.h5ad")


def scaling_per_size(pattern):
    """``pattern`` (with ``{n_cells}``; other wildcards in double braces) over every size,
    smallest first."""
    return expand(pattern, n_cells=scaling_sizes())


def scaling_per_method_and_size(pattern):
    """``pattern`` (with ``{method}`` and ``{n_cells}``) over every method and size."""
    return expand(pattern, method=scaling_methods(), n_cells=scaling_sizes())


def scaling_targets():
    """Every final output of the runtime study."""
    return [
        "results/scaling/tables/runtime.csv",
        "results/scaling/tables/claim_check.csv",
        "results/scaling/figures/supp_fig2_runtime.png",
        "results/scaling/figures/supp_fig2_runtime.pdf",
    ]


# Paper Fig. 5 (Stereoscope deconvolution study) -----------------------------------------


def deconvolution_run_keys():
    """Every fit of the study, ``(rna_epochs, spatial_epochs)``: the configured RNA epochs
    × spatial epochs, sorted."""
    settings = config["deconvolution"]
    return sorted(
        (rna, spatial)
        for rna in settings["rna_epochs"]
        for spatial in settings["spatial_epochs"]
    )


def check_deconvolution_config(settings):
    """Every claim target and the map need a configured run, and a run without the
    simulation needs the real pair; a ValueError names the key."""
    if settings["simulate"] is None:
        if settings["real"] is None:
            raise ValueError(
                "deconvolution.simulate and deconvolution.real are both null: the study has "
                "no data. Set one of them."
            )
        return
    runs = {
        (rna, spatial)
        for rna in settings["rna_epochs"]
        for spatial in settings["spatial_epochs"]
    }
    for target in settings["targets"]:
        key = (target["rna_epochs"], target["spatial_epochs"])
        if key not in runs:
            raise ValueError(
                f"deconvolution.targets asks for {key[0]} + {key[1]} epochs, which is not a "
                "run: add them to deconvolution.rna_epochs and spatial_epochs."
            )


if study_included("deconvolution"):
    check_deconvolution_config(config["deconvolution"])


# The peers the study can run (scprob.bench.deconvolution.PEERS), and the data sets.
DECONVOLUTION_PEERS = ["scvi_tools", "stereoscope"]
DECONVOLUTION_DATASETS = "simulated|real"
# The real pair's files in spacexr's layout, relative to deconvolution.real.folder.
SPACEXR_FILES = {
    "reference_counts": "Reference/Visium_Ref/counts.csv",
    "reference_labels": "Reference/Visium_Ref/cell_types.csv",
    "reference_umi": "Reference/Visium_Ref/nUMI.csv",
    "spatial_counts": "SpatialRNA/VisiumVignette/counts.csv",
    "spatial_coords": "SpatialRNA/VisiumVignette/coords.csv",
    "spatial_umi": "SpatialRNA/VisiumVignette/nUMI.csv",
}


def declared_downloads(folder, files):
    """``{name: path}`` of a real data set's ``files`` (name -> path under ``folder``) when
    ``folder`` lies under resources/ and every file is a declared download (rule
    download_source fetches and checks it), else None."""
    prefix = "resources/"
    folder = os.path.join(folder, "")  # one trailing separator
    if not folder.startswith(prefix):
        return None
    paths = {name: f"{folder}{path}" for name, path in files.items()}
    if all(path[len(prefix) :] in DOWNLOAD_SOURCES for path in paths.values()):
        return paths
    return None


def real_data_files(folder, files):
    """A real data set's files: declared downloads under resources/, else the files under
    ``folder`` (relative: to the repository root)."""
    declared = declared_downloads(folder, files)
    if declared is not None:
        return declared
    return {name: str(Path(workflow.basedir) / folder / path) for name, path in files.items()}


def real_panel_enabled(section, files, panel):
    """Whether a study's real panel runs: ``<section>.real`` is set and its files are
    declared downloads or its folder exists (else the panel is skipped with a warning
    naming the folder)."""
    real = config[section]["real"]
    if real is None:
        return False
    if declared_downloads(real["folder"], files(real)) is not None:
        return True
    folder = Path(workflow.basedir) / real["folder"]
    if not folder.is_dir():
        logger.warning(
            f"{section}.real.folder {folder} does not exist and its files are not declared "
            f"downloads: the {panel} is skipped (../shared/data/README.md says where the "
            f"data come from; set {section}.real: null to silence this)."
        )
        return False
    return True


def deconvolution_real_files(real):
    """The real pair's files by name, relative to deconvolution.real.folder: spacexr's
    layout, or the Space Ranger files and reference of format visium."""
    if real["format"] == "spacexr":
        return SPACEXR_FILES
    visium = real["visium"]
    return {
        "matrix": visium["matrix_h5"],
        "spatial": visium["spatial_tar"],
        "reference": visium["reference_h5ad"],
    }


def check_deconvolution_real(real):
    if real is not None and (real["format"] == "visium") != (real["visium"] is not None):
        raise ValueError(
            "deconvolution.real.visium holds the settings of format visium: set it with "
            "format visium, and to null with format spacexr."
        )


if study_included("deconvolution"):
    check_deconvolution_real(config["deconvolution"]["real"])
DECONVOLUTION_REAL = study_included("deconvolution") and real_panel_enabled(
    "deconvolution", deconvolution_real_files, "real-data panel"
)
DECONVOLUTION_REAL_FORMAT = (
    config["deconvolution"]["real"]["format"] if DECONVOLUTION_REAL else None
)


def deconvolution_real_setting(key):
    """A key of deconvolution.real (None when the real panel does not run)."""
    return config["deconvolution"]["real"][key] if DECONVOLUTION_REAL else None


def deconvolution_real_inputs(wildcards):
    """The real pair's files (declared downloads, or under deconvolution.real.folder,
    relative to the repository root)."""
    real = config["deconvolution"]["real"]
    return real_data_files(real["folder"], deconvolution_real_files(real))


def deconvolution_real_runs():
    """Every method's proportions of the real spots at deconvolution.real's epochs."""
    if not DECONVOLUTION_REAL:
        return []
    rna, spatial = (deconvolution_real_setting(k) for k in ("rna_epochs", "spatial_epochs"))
    return [
        f"results/deconvolution/proportions/real/{method}_{rna}_{spatial}.csv"
        for method in deconvolution_methods()
    ]


def deconvolution_real_labels():
    if not DECONVOLUTION_REAL:
        return []
    rna, spatial = (deconvolution_real_setting(k) for k in ("rna_epochs", "spatial_epochs"))
    return [f"{method}\n{rna} + {spatial} epochs" for method in deconvolution_methods()]


def deconvolution_methods():
    """Ours, then the configured peers: the method part of each run's file names."""
    return ["scprob", *study_peers("deconvolution")]


def deconvolution_runs():
    """The runs as ``[method, rna_epochs, spatial_epochs]``, in the order of
    deconvolution_per_run(): every method at every RNA x spatial epochs."""
    return [
        [method, rna, spatial]
        for method in deconvolution_methods()
        for rna, spatial in deconvolution_run_keys()
    ]


def deconvolution_per_run(pattern):
    """``pattern`` (with ``{run}``) over every run of every method."""
    return [
        pattern.format(run=f"{method}_{rna}_{spatial}")
        for method, rna, spatial in deconvolution_runs()
    ]


def deconvolution_peer_settings():
    """What a peer run needs: the interpreters (relative paths read from the repository
    root), the scvi-tools peer script, the labels key, the learning rate and a timeout."""
    settings = config["deconvolution"]
    return {
        "python": {peer: peer_python(peer) for peer in DECONVOLUTION_PEERS},
        "script": str(
            Path(workflow.basedir) / "workflow" / "scripts" / "peer_scvi_tools_stereoscope.py"
        ),
        "labels_key": settings["labels_key"],
        "lr": settings["rna"]["lr"],
        "timeout_s": settings["peer_timeout_s"],
    }


def deconvolution_map_runs():
    """The proportions the maps show: every method's longest run (most RNA, then spatial
    epochs), ours first."""
    rna, spatial = deconvolution_run_keys()[-1]
    return [
        f"results/deconvolution/proportions/simulated/{method}_{rna}_{spatial}.csv"
        for method in deconvolution_methods()
    ]


def deconvolution_map_labels():
    rna, spatial = deconvolution_run_keys()[-1]
    return [f"{method}\n{rna} + {spatial} epochs" for method in deconvolution_methods()]


def deconvolution_targets():
    """Every final output of the deconvolution study: the simulated panels (unless
    deconvolution.simulate is null) and the real one (when it runs)."""
    return (
        deconvolution_simulated_targets() if config["deconvolution"]["simulate"] else []
    ) + (
        []
        if not DECONVOLUTION_REAL
        else [
            "results/deconvolution/figures/fig5g_real_proportion_maps.png",
            "results/deconvolution/figures/fig5g_real_proportion_maps.pdf",
            # Ours against each peer: nothing to compare without one.
            *(
                ["results/deconvolution/tables/real_agreement.csv"]
                if study_peers("deconvolution")
                else []
            ),
        ]
    )


def deconvolution_simulated_targets():
    return [
        "results/deconvolution/tables/accuracy.csv",
        "results/deconvolution/tables/convergence.csv",
        "results/deconvolution/tables/agreement.csv",
        "results/deconvolution/tables/claim_check.csv",
        "results/deconvolution/figures/fig5g_proportion_maps.png",
        "results/deconvolution/figures/fig5g_proportion_maps.pdf",
        "results/deconvolution/figures/supp_fig5_convergence.png",
        "results/deconvolution/figures/supp_fig5_convergence.pdf",
        "results/deconvolution/figures/fig5_per_type_spearman.png",
        "results/deconvolution/figures/fig5_per_type_spearman.pdf",
    ]


# Paper Fig. 3 (scArches label-transfer study) ------------------------------------------

# totalVI fitted from scratch: the reference alone, and de novo on reference + query.
SCARCHES_FITS = ["reference", "de_novo"]
# Latent spaces the random forest transfers labels on: the scArches query model's, de novo's.
SCARCHES_METHODS = ["scarches", "de_novo"]
# The query's conditions in the order of the figure (scprob.data.simulate.cite_seq).
SCARCHES_CONDITIONS = ["healthy", "moderate", "severe"]
# The reference files each real format reads (scarches.real.reference, in this order).
SCARCHES_REAL_FORMATS = {
    "totalvi_csv": ["reference_rna", "reference_proteins"],
    "seurat_v4": ["reference_h5ad"],
}


def scarches_real_files(real):
    """The real pair's files, keyed as the reader's inputs, relative to scarches.real.folder."""
    names = SCARCHES_REAL_FORMATS[real["format"]]
    return {**dict(zip(names, real["reference"])), "query": real["query"]}


def check_scarches_config(settings):
    """The files a real format reads; a ValueError names the keys."""
    real = settings["real"]
    if real is not None and len(real["reference"]) != len(
        SCARCHES_REAL_FORMATS[real["format"]]
    ):
        names = SCARCHES_REAL_FORMATS[real["format"]]
        raise ValueError(
            f"scarches.real.reference lists {len(real['reference'])} file(s), but format "
            f"{real['format']} reads {len(names)}: {', '.join(names)}."
        )


# Real CITE-seq data instead of the simulation (its files must exist: no simulated fallback).
SCARCHES_REAL = reads_real_data("scarches")
if SCARCHES_REAL:
    check_scarches_config(config["scarches"])


def scarches_real_inputs(wildcards):
    """The real reference's CSVs and the query h5ad (declared downloads, or under
    scarches.real.folder)."""
    real = config["scarches"]["real"]
    return real_data_files(real["folder"], scarches_real_files(real))


def scarches_conditions():
    """The query's conditions in the figure's order: the simulated COVID-19 ones, or the
    real query's healthy donor."""
    return ["healthy"] if SCARCHES_REAL else SCARCHES_CONDITIONS


# The panels of the figures rule, by file stem.
SCARCHES_FIGURES = [
    "fig3b_umap_labels",
    "fig3c_umap_dataset",
    "fig3d_confusion_scarches",
    "fig3f_g_rare_subsets",
    "fig3h_agreement",
    "runtime",
]
# The reference model's own figure (rule evaluate_reference_totalvi).
SCARCHES_REFERENCE_FIGURES = ["reference_totalvi"]


def scarches_fit_inputs(wildcards):
    """The data a from-scratch fit reads: the reference, plus the query for de novo."""
    inputs = {"reference": "results/scarches/data/reference.h5ad"}
    if wildcards.fit == "de_novo":
        inputs["query"] = "results/scarches/data/query.h5ad"
    return inputs


def scarches_targets():
    """Every final output of the scArches study."""
    return [
        *expand(
            "results/scarches/tables/{name}.csv",
            name=[
                "label_transfer_scores",
                "confusion_scarches",
                "confusion_de_novo",
                "agreement",
                "rare_subsets",
                "runtime",
                "summary",
                "claim_check",
                "reference_training_history",
                "query_training_history",
                "de_novo_training_history",
                "reference_clusters",
                "reference_protein_foreground",
            ],
        ),
        *expand(
            "results/scarches/figures/{stem}.{ext}",
            stem=[*SCARCHES_FIGURES, *SCARCHES_REFERENCE_FIGURES],
            ext=["png", "pdf"],
        ),
    ]


def throughput_settings():
    """The throughput block with the shared seed and the peer switch, and the peer's
    interpreter and script as absolute paths."""
    settings = {**config["benchmarks"]["throughput"], "seed": config["seed"]}
    settings["peer"] = config["peer"]
    settings["peer_python"] = peer_python("scvi_tools")
    settings["peer_script"] = str(
        Path(workflow.basedir) / "workflow" / "scripts" / "peer_scvi_tools_throughput.py"
    )
    return settings


def fit_order_data():
    """The runtime study's subsample the fit-order benchmark trains on."""
    n_cells = config["benchmarks"]["fit_order"]["n_cells"]
    if n_cells > scaling_atlas_cells():
        raise WorkflowError(
            f"benchmarks.fit_order.n_cells is {n_cells}, more than the simulated atlas "
            f"holds ({scaling_atlas_cells()}, the largest of scaling.n_cells): lower it or "
            "add a larger size to scaling.n_cells."
        )
    return f"results/scaling/data/heart_{n_cells}.h5ad"


def benchmark_targets():
    """The model-core benchmarks: SCVI training throughput (JSON, CSV, bar chart), its
    speed by fit order and input format (JSON, CSV, figure) and peak memory of training on
    a large sparse input (JSON)."""
    return [
        *expand("results/benchmarks/throughput.{ext}", ext=["json", "csv", "png", "pdf"]),
        *expand("results/benchmarks/fit_order.{ext}", ext=["json", "csv", "png", "pdf"]),
        "results/benchmarks/sparse_training_memory.json",
    ]


# Paper Fig. 5c (code-complexity study) --------------------------------------------------

# Our package, whose files the study measures (the repository's, wherever the run's
# working directory is).
COMPLEXITY_PACKAGE = Path(workflow.basedir) / "src" / "scprob"


def complexity_sources():
    """Every file of our configured groups, absolute: the inputs of the measurement (an
    edited model reruns it). A configured path that does not exist stops the run naming
    it, before any job starts."""
    settings = config["complexity"]
    groups = {**settings["models"], "core": settings["core"]}
    files = []
    for group, entries in groups.items():
        for entry in entries:
            path = COMPLEXITY_PACKAGE / entry
            if path.is_dir():
                files.extend(sorted(str(p) for p in path.rglob("*.py")))
            elif path.is_file():
                files.append(str(path))
            else:
                raise WorkflowError(
                    f"complexity group {group!r}: configured file {entry!r} does not exist "
                    f"under {COMPLEXITY_PACKAGE}; fix the path in the config "
                    "(complexity.models or complexity.core)."
                )
    return list(dict.fromkeys(files))


def complexity_peers():
    """The peers measured from their downloaded sdists: all with `download`, else none."""
    return list(config["complexity"]["peers"]) if config["complexity"]["download"] else []


def complexity_sdists():
    """The downloaded sdists the measurement reads, in the order of complexity_peers()."""
    peers = config["complexity"]["peers"]
    return [f"resources/complexity/{peers[p]['sdist']}" for p in complexity_peers()]


def complexity_sdist_pattern():
    """The download rule's wildcard: exactly the configured sdist file names."""
    return "|".join(re.escape(p["sdist"]) for p in config["complexity"]["peers"].values())


def complexity_peer_of(sdist):
    """The peer settings (package, version, sha256) of a configured sdist file name."""
    for peer in config["complexity"]["peers"].values():
        if peer["sdist"] == sdist:
            return {k: peer[k] for k in ("package", "version", "sdist", "sha256")}
    raise WorkflowError(f"no complexity peer has the sdist {sdist!r}.")


def complexity_targets():
    """Every final output of the code-complexity study."""
    return [
        "results/complexity/tables/complexity.csv",
        "results/complexity/tables/complexity_files.csv",
        "results/complexity/tables/claim_check.csv",
        "results/complexity/figures/fig5c_complexity.png",
        "results/complexity/figures/fig5c_complexity.pdf",
    ]


# Paper Supp. Fig. 6 (CellAssign study) -------------------------------------------------

# Methods of every data set beside the configured peers: ours and the marker-sum baseline.
CELLASSIGN_METHODS = ["scprob", "marker_sum"]
# The peers the study can run (scprob.bench.cellassign.PEERS).
CELLASSIGN_PEERS = ["scvi_tools"]
# The simulated panels (tumour-like data sets, the runtime series, the ablation) run unless
# cellassign.simulated is null.
CELLASSIGN_SIMULATED_PANELS = (
    study_included("cellassign") and config["cellassign"]["simulated"] is not None
)
CELLASSIGN_SIMULATED = ["follicular", "hgsc"] if CELLASSIGN_SIMULATED_PANELS else []


def cellbench_files(real):
    """The CellBench files of every configured technology, the gene table and the marker
    list, relative to cellassign.real.folder."""
    files = {"gene_map": "GENCODEv44_Gene_id2name.csv", "markers": real["markers"]}
    for technology in real["technologies"]:
        files[f"{technology}_counts"] = f"sc_{technology}.count.csv.gz"
        files[f"{technology}_metadata"] = f"sc_{technology}.metadata.csv.gz"
    return files


CELLASSIGN_REAL = study_included("cellassign") and real_panel_enabled(
    "cellassign", cellbench_files, "CellBench panel"
)


def cellassign_runtime_datasets():
    """The runtime panel's data sets by name, ``{"pbmc_1071": 1071, ...}``, smallest first."""
    if not CELLASSIGN_SIMULATED_PANELS:
        return {}
    return {f"pbmc_{n}": n for n in sorted(config["cellassign"]["runtime_sizes"])}


def cellassign_real_datasets():
    if not CELLASSIGN_REAL:
        return []
    return [f"cellbench_{t}" for t in config["cellassign"]["real"]["technologies"]]


def cellassign_datasets():
    """Every data set the study annotates: the simulations, the runtime series, the real."""
    return [
        *CELLASSIGN_SIMULATED,
        *cellassign_runtime_datasets(),
        *cellassign_real_datasets(),
    ]


def cellassign_methods():
    """Ours, the baseline, then the configured peers: the method part of the file names."""
    return [*CELLASSIGN_METHODS, *study_peers("cellassign")]


def cellassign_markers(wildcards):
    """A data set's marker matrix (the runtime series share one)."""
    name = "pbmc" if wildcards.dataset.startswith("pbmc_") else wildcards.dataset
    return f"results/cellassign/markers/{name}.csv"


def cellassign_design_key(wildcards):
    """The obs column of a data set's design covariate (None: no design)."""
    simulated = (config["cellassign"]["simulated"] or {}).get(wildcards.dataset)
    return None if simulated is None else simulated["design_key"]


def cellassign_real_inputs(wildcards):
    """The CellBench files of one technology and the marker list (declared downloads, or
    under cellassign.real.folder)."""
    real = config["cellassign"]["real"]
    files = real_data_files(real["folder"], cellbench_files(real))
    technology = wildcards.technology
    return {
        "counts": files[f"{technology}_counts"],
        "metadata": files[f"{technology}_metadata"],
        "gene_map": files["gene_map"],
        "markers": files["markers"],
    }


# The paper's real data (cellassign.paper_data) replace the simulated panels' data sets.
CELLASSIGN_PAPER_DATA = CELLASSIGN_SIMULATED_PANELS and (
    config["cellassign"]["paper_data"] is not None
)


def cellassign_paper_files():
    """The paper's files by name (declared downloads, or under paper_data.folder)."""
    paper = config["cellassign"]["paper_data"]
    files = {"pbmc_tar": paper["pbmc_tar"]}
    for dataset in CELLASSIGN_SIMULATED:
        files[f"{dataset}_h5ad"] = paper[dataset]["h5ad"]
        files[f"{dataset}_markers"] = paper[dataset]["markers"]
    return real_data_files(paper["folder"], files)


def cellassign_paper_inputs(wildcards):
    """One real data set's h5ad and marker CSV."""
    files = cellassign_paper_files()
    return {
        "data": files[f"{wildcards.dataset}_h5ad"],
        "markers": files[f"{wildcards.dataset}_markers"],
    }


def cellassign_simulation_settings(wildcards):
    """A simulation's settings, its marker list's path resolved against the repository."""
    settings = dict(config["cellassign"]["simulated"][wildcards.dataset])
    folder = Path(workflow.basedir) / config["cellassign"]["markers_folder"]
    return {**settings, "markers": str(folder / settings["markers"])}


def cellassign_peer_settings():
    """What a peer run needs: the interpreters (relative paths read from the repository
    root), the peer script and a timeout."""
    return {
        "python": {peer: peer_python(peer) for peer in CELLASSIGN_PEERS},
        "script": str(
            Path(workflow.basedir) / "workflow" / "scripts" / "peer_scvi_tools_cellassign.py"
        ),
        "timeout_s": config["cellassign"]["peer_timeout_s"],
    }


def cellassign_per_run(pattern):
    """``pattern`` (with ``{dataset}`` and ``{method}``) over every data set and method."""
    return expand(pattern, dataset=cellassign_datasets(), method=cellassign_methods())


def cellassign_runs():
    """``[dataset, method]`` in the order of cellassign_per_run()."""
    return [[d, m] for d in cellassign_datasets() for m in cellassign_methods()]


CELLASSIGN_FIGURES = [
    "supp_fig6cf_confusion",
    "supp_fig6g_runtime",
    "small_data_ablation",
]


def cellassign_targets():
    """Every final output of the CellAssign study: its simulated panels (unless
    cellassign.simulated is null) and the CellBench panel (when it runs)."""
    tables = ["scores", "confusion", "agreement", "claim_check"]
    figures = ["cellbench_confusion"] if CELLASSIGN_REAL else []
    if CELLASSIGN_SIMULATED_PANELS:
        tables += ["runtime", "ablation"]
        figures = CELLASSIGN_FIGURES + figures
    if not cellassign_datasets():
        raise WorkflowError(
            "the CellAssign study has no data: cellassign.simulated is null and the "
            "CellBench panel does not run (cellassign.real). Set one of them."
        )
    return [
        *expand("results/cellassign/tables/{name}.csv", name=tables),
        *expand("results/cellassign/figures/{name}.{ext}", name=figures, ext=["png", "pdf"]),
    ]
