"""The workflow's configuration schema: the shipped configs pass, and a wrong key or value
stops the run with a message naming it (directly and through `snakemake -n`)."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from scprob.data.download import read_sources

# The workflow extra (pyproject's optional "workflow" dependencies) brings Snakemake.
WorkflowError = pytest.importorskip("snakemake.exceptions").WorkflowError
validate = pytest.importorskip("snakemake.utils").validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "config" / name).read_text())


def set_key(config: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``dotted`` ("a.b.c") set to ``value``."""
    changed = copy.deepcopy(config)
    *parents, last = dotted.split(".")
    node = changed
    for key in parents:
        node = node[key]
    node[last] = value
    return changed


# (dotted key, bad value, what the message must contain)
BAD_CONFIGS = [
    pytest.param("covariates.scvi.n_epoch", 3, "'n_epoch' was unexpected", id="unknown-key"),
    pytest.param("covariate", {}, "'covariate' was unexpected", id="unknown-top-level-key"),
    pytest.param("covariates.scvi.max_epochs", 0, "['max_epochs']", id="max_epochs-0"),
    pytest.param("covariates.methods", ["scvi", "scvi_cc", "foo"], "'foo' is not one of",
                 id="unknown-method"),
    pytest.param("covariates.methods", ["scvi", "regress_bbknn"], "['methods']",
                 id="methods-without-scvi_cc"),
    pytest.param("covariates.scvi.gene_likelihood", "gaussian", "['gene_likelihood']",
                 id="bad-likelihood"),
    pytest.param("covariates.simulate.n_genes", 100, "['n_genes']", id="too-few-genes"),
    pytest.param("seed", -1, "['seed']", id="negative-seed"),
    pytest.param("scarches.totalvi.n_layers", 2, "'n_layers' was unexpected",
                 id="scarches-unknown-key"),
    pytest.param("scarches.simulate.reference.n_batches", 25, "['n_batches']",
                 id="scarches-batches-not-donors-times-days"),
    pytest.param("scarches.query_training.weight_decay", -1.0, "['weight_decay']",
                 id="scarches-negative-weight-decay"),
    pytest.param("scarches.query_training.max_epochs", 0, "['max_epochs']",
                 id="scarches-query-epochs-0"),
    pytest.param("scarches.totalvi.gene_likelihood", "poisson", "['gene_likelihood']",
                 id="scarches-bad-likelihood"),
    pytest.param("scarches.rare_subsets", [], "['rare_subsets']", id="scarches-no-subsets"),
    pytest.param("scarches.accuracy_tolerance", 2.0, "['accuracy_tolerance']",
                 id="scarches-tolerance-above-1"),
    pytest.param("scaling.n_cells", [0, 1000], "['scaling']['n_cells'][0]",
                 id="scaling-size-0"),
    pytest.param("scaling.methods", ["scvi", "umap"], "'umap' is not one of",
                 id="scaling-unknown-method"),
    pytest.param("scaling.scvi.max_epochs_cap", 0, "['max_epochs_cap']",
                 id="scaling-cap-0"),
    pytest.param("scaling.scvi.limit_train_batches", 0.5, "['limit_train_batches']",
                 id="scaling-fractional-batches"),
    pytest.param("scaling.warmup_cells", -1, "['warmup_cells']", id="scaling-negative-warmup"),
    pytest.param("cellassign.min_accuracy", 1.5, "['min_accuracy']",
                 id="cellassign-accuracy-above-1"),
    pytest.param("cellassign.runtime_sizes", [50, 1071], "['runtime_sizes'][0]",
                 id="cellassign-size-below-100"),
    pytest.param("cellassign.peers", ["cellassign_r"], "'cellassign_r' is not one of",
                 id="cellassign-unknown-peer"),
    pytest.param("download.mirror", "ftp://mirror.example", "['mirror']",
                 id="download-mirror-not-http"),
    pytest.param("download.sources",
                 [{"url": "https://example.org/a.csv", "sha256": "abc", "size": 3}],
                 "['sha256']", id="download-short-sha256"),
    pytest.param("download.timeout_s", 0, "['timeout_s']", id="download-timeout-0"),
]


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    config = load(name)
    validate(config, str(SCHEMA))
    assert set(config["covariates"]["methods"]) >= {"scvi", "scvi_cc"}


def test_test_config_has_the_same_keys_as_the_default() -> None:
    """Every key of the default, in the test config too; a section the schema lets be
    null (deconvolution.real) may be switched off there with null."""
    def keys(node: Any, default: Any, prefix: str = "") -> set[str]:
        if node is None and isinstance(default, dict):
            node = default  # switched off: its keys count as present
        if not isinstance(node, dict):
            return {prefix}
        return set().union(*(keys(v, (default or {}).get(k), f"{prefix}.{k}")
                             for k, v in node.items()))

    default = load("config.yaml")
    assert keys(load("test.yaml"), default) == keys(default, default)
    assert load("test.yaml")["deconvolution"]["real"] is None


@pytest.mark.parametrize(("dotted", "value", "message"), BAD_CONFIGS)
def test_bad_config_is_rejected_naming_the_key(dotted: str, value: Any, message: str) -> None:
    with pytest.raises(WorkflowError) as error:
        validate(set_key(load("config.yaml"), dotted, value), str(SCHEMA))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [BAD_CONFIGS[0], BAD_CONFIGS[2], BAD_CONFIGS[3]],
)
def test_snakemake_dry_run_stops_on_a_bad_config(
    tmp_path: Path, dotted: str, value: Any, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(set_key(load("test.yaml"), dotted, value)))
    returncode, output = dry_run(tmp_path, bad)
    assert returncode != 0
    assert "Error validating config file" in output
    assert message in output


def test_snakemake_dry_run_accepts_the_test_config(tmp_path: Path) -> None:
    returncode, output = dry_run(tmp_path, REPO / "config" / "test.yaml")
    assert returncode == 0, output
    for rule in ("simulate_wing_disc", "integrate_scvi", "integrate_baseline", "evaluate",
                 "figures_covariates"):
        assert rule in output


def test_paper_config_reads_the_papers_data_at_its_settings() -> None:
    paper = load("paper.yaml")
    validate(paper, str(SCHEMA))
    assert set(paper["studies"]) == {"covariates", "scaling", "scarches", "benchmarks",
                                     "complexity", "deconvolution", "cellassign"}
    for study in ("covariates", "scaling", "scarches", "deconvolution"):
        assert paper[study]["simulate"] is None and paper[study]["real"] is not None, study
    assert paper["deconvolution"]["real"]["format"] == "visium"
    assert paper["scarches"]["real"]["format"] == "seurat_v4"
    assert paper["cellassign"]["paper_data"] is not None
    scaling = paper["scaling"]
    assert scaling["n_cells"] == [5000, 10000, 20000, 40000, 80000, 160000, 320000, 486134]
    assert scaling["n_top_genes"] == 4000 and scaling["real"]["hvg_batch_key"] == "cell_source"
    assert scaling["scvi"]["max_epochs_cap"] is None  # early stopping alone, as published
    assert (scaling["scvi"]["max_epochs"], scaling["scvi"]["early_stopping_patience"],
            scaling["scvi"]["batch_size"], scaling["scvi"]["limit_train_batches"]) == (
        10000, 45, 1024, 20)
    assert paper["covariates"]["scvi"]["max_epochs"] == 400
    assert len(paper["covariates"]["real"]["marker_genes"]) == 31
    visium = paper["deconvolution"]["real"]
    assert (visium["rna_epochs"], visium["spatial_epochs"]) == (100, 5000)
    assert (visium["visium"]["crop_rows"], visium["visium"]["crop_cols"]) == ([15, 32],
                                                                              [20, 80])


def test_paper_config_plans_every_real_data_job(tmp_path: Path) -> None:
    """`snakemake -n --configfile config/paper.yaml`: every paper file is a declared
    download and every study's real reader is planned, no simulation."""
    returncode, output = dry_run(tmp_path, REPO / "config" / "paper.yaml")
    assert returncode == 0, output
    table = read_sources(REPO / "config" / "paper_sources.tsv")
    for source in table:
        assert f"resources/{source.path}" in output, source.path
    assert output.count("rule download_source:") == len(table) == 13
    for rule in ("read_wing_disc", "subsample_heart", "read_cite_seq_pair",
                 "read_visium_pair", "read_cellassign_paper_data", "read_pbmc_68k",
                 "time_scvi", "integrate_scvi", "train_totalvi_scarches", "deconvolve_spots",
                 "annotate_cells", "benchmark_fit_order"):
        assert f"rule {rule}:" in output, rule
    for rule in ("simulate_wing_disc", "simulate_heart_atlas", "simulate_scarches",
                 "simulate_hippocampus", "simulate_tumour_markers", "simulate_pbmc_markers"):
        assert f"rule {rule}:" not in output, rule


def dry_run(directory: Path, *configfiles: Path, extra: Sequence[str] = ()
            ) -> tuple[int, str]:
    """``snakemake -n`` of the repository's Snakefile in ``directory``: exit status and
    the combined output (Snakemake logs its errors to stdout)."""
    run = subprocess.run(
        [str(SNAKEMAKE), "-n", *extra, "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(directory), "--configfile", *map(str, configfiles)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )
    return run.returncode, run.stdout


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_scarches_configs_keep_the_papers_architecture_and_epoch_ratio(name: str) -> None:
    if not (REPO / "config" / name).exists():
        pytest.skip(f"config/{name} is absent")
    scarches = load(name)["scarches"]
    validate(load(name), str(SCHEMA))
    architecture = scarches["totalvi"]
    assert architecture["n_layers_encoder"] == architecture["n_layers_decoder"] == 2
    assert architecture["use_layer_norm"] and not architecture["use_batch_norm"]
    assert architecture["n_latent"] == 20
    reference, query = scarches["reference_training"], scarches["query_training"]
    assert reference["lr"] == query["lr"] == 4e-3
    assert reference["batch_size"] == query["batch_size"] == 256
    assert query["weight_decay"] == 0.0
    # The paper trained 250 reference epochs and 150 query epochs.
    assert reference["max_epochs"] * 150 == query["max_epochs"] * 250


def delete_key(config: dict[str, Any], dotted: str) -> dict[str, Any]:
    """A copy of ``config`` without ``dotted`` ("a.b.c")."""
    changed = copy.deepcopy(config)
    *parents, last = dotted.split(".")
    node = changed
    for key in parents:
        node = node[key]
    del node[last]
    return changed


@pytest.mark.parametrize("dotted", ["scarches.totalvi.n_latent", "covariates.scvi.max_epochs",
                                    "seed"])
def test_a_partial_configfile_stops_the_run_naming_the_missing_key(
    tmp_path: Path, dotted: str
) -> None:
    # config/config.yaml holds the key, so a config layered on it would pass: the file
    # must be validated as given.
    partial = tmp_path / "partial.yaml"
    partial.write_text(yaml.safe_dump(delete_key(load("test.yaml"), dotted)))
    returncode, output = dry_run(tmp_path, partial)
    assert returncode != 0
    assert f"it leaves out {dotted}" in output
    assert "Error validating config file" in output


def test_configfiles_merge_in_order_and_config_overrides_them(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("benchmarks:\n  throughput:\n    repeats: 2\n")
    returncode, output = dry_run(tmp_path, REPO / "config" / "test.yaml", overlay)
    assert returncode == 0, output
    # --config lands on top of the given files and is validated with them.
    returncode, output = dry_run(tmp_path, REPO / "config" / "test.yaml",
                                 extra=["--config", "seed=-1"])
    assert returncode != 0 and "['seed']" in output


# Studies and data sources -----------------------------------------------------------------


def only_studies(config: dict[str, Any], studies: list[str]) -> dict[str, Any]:
    """``config`` running ``studies`` alone, without the settings blocks of the others."""
    kept = {"seed", "download", "peer", "peer_python", *studies}
    return {**{k: v for k, v in config.items() if k in kept}, "studies": studies}


def test_a_run_of_some_studies_needs_only_their_blocks_and_plans_only_their_jobs(
        tmp_path: Path) -> None:
    config = tmp_path / "some.yaml"
    config.write_text(yaml.safe_dump(only_studies(load("test.yaml"), ["benchmarks",
                                                                      "scaling"])))
    returncode, output = dry_run(tmp_path, config)
    assert returncode == 0, output
    assert "benchmark_throughput" in output and "simulate_heart_atlas" in output
    for rule in ("simulate_wing_disc", "simulate_scarches", "annotate_cells",
                 "deconvolve_spots"):
        assert rule not in output


@pytest.mark.parametrize(("studies", "missing"), [
    (["covariates"], "covariates"),
    # The benchmarks train on the runtime study's subsamples.
    (["benchmarks"], "scaling"),
])
def test_a_listed_study_without_its_block_is_named(tmp_path: Path, studies: list[str],
                                                   missing: str) -> None:
    config = only_studies(load("test.yaml"), studies)
    config.pop(missing, None)
    path = tmp_path / "missing.yaml"
    path.write_text(yaml.safe_dump(config))
    returncode, output = dry_run(tmp_path, path)
    assert returncode != 0
    assert f"it leaves out {missing}." in output


def test_unknown_study_is_rejected() -> None:
    with pytest.raises(WorkflowError) as error:
        validate(set_key(load("config.yaml"), "studies", ["scarches", "umap"]), str(SCHEMA))
    assert "'umap' is not one of" in str(error.value)


@pytest.mark.parametrize(("dotted", "message"), [
    ("scarches", "scarches needs exactly one of scarches.simulate and scarches.real: set "
                 "the other to null."),
    ("deconvolution", "deconvolution.simulate and deconvolution.real are both null: the "
                      "study has no data. Set one of them."),
    ("cellassign", "the CellAssign study has no data: cellassign.simulated is null and the "
                   "CellBench panel does not run (cellassign.real). Set one of them."),
])
def test_a_study_without_data_stops_the_run(tmp_path: Path, dotted: str,
                                            message: str) -> None:
    config = only_studies(load("test.yaml"), [dotted])
    source = "simulated" if dotted == "cellassign" else "simulate"
    config[dotted][source] = None
    config[dotted]["real"] = None
    path = tmp_path / "nodata.yaml"
    path.write_text(yaml.safe_dump(config))
    returncode, output = dry_run(tmp_path, path)
    assert returncode != 0
    assert message in output


def test_real_config_plans_every_real_panel_from_declared_downloads(tmp_path: Path) -> None:
    """config/real.yaml: the three studies with real data, every input a download of the
    repository's sources table, no simulation."""
    real = load("real.yaml")
    validate(real, str(SCHEMA))
    returncode, output = dry_run(tmp_path, REPO / "config" / "real.yaml")
    assert returncode == 0, output
    for rule in ("download_source", "read_cite_seq_pair", "train_totalvi_scarches",
                 "map_query_scarches", "evaluate_reference_totalvi", "read_cellbench",
                 "figures_cellassign_real", "read_spacexr_pair", "figures_deconvolution_real"):
        assert f"rule {rule}:" in output, rule
    for rule in ("simulate_scarches", "simulate_hippocampus", "simulate_tumour_markers",
                 "simulate_pbmc_markers", "cellassign_ablation", "figures_cellassign:"):
        assert f"rule {rule}" not in output, rule
    # The PBMC pair (3 files), the CellBench pair of technologies with the gene table and
    # the marker list (6), the spacexr pair (6); not the table's other files.
    assert output.count("rule download_source:") == 15
    assert "resources/pbmc_cite_seq_10x/pbmc_10k_protein_v3.h5ad" not in output
