"""The workflow's configuration schema: the shipped configs pass, and a wrong key or value
stops the run with a message naming it (directly and through `snakemake -n`)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

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
]


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    config = load(name)
    validate(config, str(SCHEMA))
    assert set(config["covariates"]["methods"]) >= {"scvi", "scvi_cc"}


def test_test_config_has_the_same_keys_as_the_default() -> None:
    def keys(node: Any, prefix: str = "") -> set[str]:
        if not isinstance(node, dict):
            return {prefix}
        return set().union(*(keys(v, f"{prefix}.{k}") for k, v in node.items()))

    assert keys(load("test.yaml")) == keys(load("config.yaml"))


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


def dry_run(directory: Path, configfile: Path) -> tuple[int, str]:
    """``snakemake -n`` of the repository's Snakefile in ``directory``: exit status and
    the combined output (Snakemake logs its errors to stdout)."""
    run = subprocess.run(
        [str(SNAKEMAKE), "-n", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(directory), "--configfile", str(configfile)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )
    return run.returncode, run.stdout
