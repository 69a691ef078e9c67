"""The SLURM profile (profiles/slurm) reaches the jobs it is written for: a dry run with it
shows each heavy rule's runtime and memory, and the timed rules on whole nodes, one at a
time. A renamed rule would silently fall back to the 30-minute, 4 GB default."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import REPO, run_snakemake


@pytest.fixture(scope="module")
def resources_by_rule(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    workdir = tmp_path_factory.mktemp("slurm_profile")
    result = run_snakemake(workdir, "--dry-run", "--profile", str(REPO / "profiles" / "slurm"))
    assert result.returncode == 0, result.stdout
    resources: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        line = re.search(r"^\s+resources: (.+)$", block, flags=re.MULTILINE)
        if rule and line:
            resources[rule.group(1)] = dict(
                item.split("=", 1) for item in line.group(1).split(", ") if "=" in item)
    return resources


@pytest.mark.parametrize("rule", ["time_scvi", "time_baseline", "benchmark_throughput",
                                  "train_totalvi_scarches", "map_query_scarches"])
def test_timed_rules_get_a_whole_node(resources_by_rule: dict[str, dict[str, str]],
                                      rule: str) -> None:
    assert resources_by_rule[rule]["slurm_extra"] == "--exclusive"


@pytest.mark.parametrize("rule", ["time_scvi", "time_baseline"])
def test_timed_scaling_rules_run_one_at_a_time(resources_by_rule: dict[str, dict[str, str]],
                                               rule: str) -> None:
    # Each job claims the slot (workflow/rules/scaling.smk) and the profile allows one:
    # without the profile's limit, --jobs 20 would run them side by side.
    assert resources_by_rule[rule]["timing_slot"] == "1"
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert "timing_slot=1" in profile["resources"]


@pytest.mark.parametrize(
    ("rule", "runtime", "mem_mb"),
    [("integrate_scvi", "240", "16000"), ("simulate_heart_atlas", "60", "12000"),
     ("time_scvi", "1440", "32000"), ("time_baseline", "720", "64000"),
     ("train_totalvi_scarches", "2880", "64000"), ("map_query_scarches", "720", "48000"),
     ("benchmark_sparse_memory", "60", "12000")],
)
def test_heavy_rules_get_their_resources(resources_by_rule: dict[str, dict[str, str]],
                                         rule: str, runtime: str, mem_mb: str) -> None:
    assert (resources_by_rule[rule]["runtime"], resources_by_rule[rule]["mem_mb"]) == (
        runtime, mem_mb)


def test_light_rules_keep_the_default(resources_by_rule: dict[str, dict[str, str]]) -> None:
    assert resources_by_rule["aggregate_scaling"]["runtime"] == "30"
    assert resources_by_rule["aggregate_scaling"]["mem_mb"] == "4000"
