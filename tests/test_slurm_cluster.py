"""profiles/slurm against a real scheduler: a one-node SLURM cluster started on this
machine (profiles/slurm/local-cluster.sh: munged, slurmctld, slurmd) runs the test
workflow through the profile, retries a failed job with more memory, and reports a
cancelled job, which a rerun then completes.

These tests start daemons as root, so they run only with SCPROB_SLURM_TESTS=1, which
`make slurm-test` (and CI) set after installing Debian's slurm-wlm and munge. Without an
accounting database the executor plugin reads job states from squeue
(--slurm-status-command squeue)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

if os.environ.get("SCPROB_SLURM_TESTS") != "1":
    pytest.skip("the real-SLURM tests run with `make slurm-test` (they start daemons as "
                "root); set SCPROB_SLURM_TESTS=1 to run them here", allow_module_level=True)

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CLUSTER = REPO / "profiles" / "slurm" / "local-cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
# No accounting database here: job states come from squeue, checked soon after submission.
STATUS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "3"]
# Tables that do not depend on threads or timing: equal to the last digit between a local
# run and the cluster's (the profile gives some jobs more threads than the config does).
EXACT_TABLES = [
    "results/complexity/tables/complexity.csv",
    "results/covariates/tables/supp_table2_genes.csv",
    "results/cellassign/tables/confusion.csv",
    "results/deconvolution/tables/accuracy.csv",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    missing = [d for d in ("munged", "slurmctld", "slurmd", "sbatch") if not shutil.which(d)]
    if missing:
        pytest.fail(f"{missing} not installed: run `profiles/slurm/local-cluster.sh install`")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(tmp_path_factory.mktemp("slurm"))}
    started = subprocess.run([str(CLUSTER), "start"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=120)
    assert started.returncode == 0, started.stdout
    try:
        yield env
    finally:
        subprocess.run([str(CLUSTER), "stop"], env=env, timeout=60)


def through_slurm(workdir: Path, env: dict[str, str], *args: str, snakefile: Path | None = None,
                  timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SNAKEMAKE), "--profile", str(PROFILE), *STATUS, "--directory", str(workdir),
         "--snakefile", str(snakefile or REPO / "Snakefile"), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def test_test_workflow_runs_through_the_profile_as_it_runs_locally(
        cluster: dict[str, str], tmp_path: Path) -> None:
    config = str(REPO / "config" / "test.yaml")
    on_cluster, local = tmp_path / "slurm", tmp_path / "local"
    run = through_slurm(on_cluster, cluster, "--configfile", config)
    assert run.returncode == 0, run.stdout[-5000:]
    assert "has been submitted with SLURM jobid" in run.stdout
    reference = subprocess.run(
        [str(SNAKEMAKE), "--cores", "2", "--directory", str(local), "--snakefile",
         str(REPO / "Snakefile"), "--configfile", config],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
    assert reference.returncode == 0, reference.stdout[-5000:]
    produced = {p.relative_to(local) for p in (local / "results").rglob("*")
                if p.is_file() and "benchmarks" not in p.parts}
    assert {p for p in produced if not (on_cluster / p).is_file()} == set()
    for table in EXACT_TABLES:
        pd.testing.assert_frame_equal(pd.read_csv(on_cluster / table),
                                      pd.read_csv(local / table), check_exact=True)
    # Every claim table has the same claims (their values depend on thread counts).
    for claims in (local / "results").glob("*/tables/claim_check.csv"):
        cluster_claims = pd.read_csv(on_cluster / claims.relative_to(local))
        assert list(cluster_claims["claim"]) == list(pd.read_csv(claims)["claim"])


MEMORY_HUNGRY = """
rule all:
    input:
        "done.txt",


# Fails unless the job was given at least twice the profile's default memory: the profile
# must retry it with mem_mb scaled by the attempt.
rule needs_memory:
    output:
        "done.txt",
    shell:
        "echo {resources.mem_mb} >> attempts.txt; test {resources.mem_mb} -ge 8000; touch {output}"
"""


def test_a_failed_job_is_retried_with_more_memory(cluster: dict[str, str],
                                                  tmp_path: Path) -> None:
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(MEMORY_HUNGRY)
    run = through_slurm(tmp_path, cluster, snakefile=snakefile, timeout=600)
    assert run.returncode == 0, run.stdout[-5000:]
    # The profile's default 4,000 MB on the first attempt, twice that on the retry.
    assert (tmp_path / "attempts.txt").read_text().split() == ["4000", "8000"]
    assert (tmp_path / "done.txt").is_file()


SLOW = """
rule all:
    input:
        "done.txt",


# Sleeps while the flag exists, so the test can cancel it while it runs.
rule slow:
    output:
        "done.txt",
    shell:
        "while test -e hold; do sleep 1; done; touch {output}"
"""


def test_a_cancelled_job_is_reported_and_a_rerun_completes(cluster: dict[str, str],
                                                           tmp_path: Path) -> None:
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SLOW)
    (tmp_path / "hold").touch()
    command = [str(SNAKEMAKE), "--profile", str(PROFILE), *STATUS, "--retries", "0",
               "--directory", str(tmp_path), "--snakefile", str(snakefile)]
    with subprocess.Popen(command, env=cluster, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        job = running_job(cluster)
        subprocess.run(["scancel", job], env=cluster, check=True, timeout=30)
        output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in output
    assert not (tmp_path / "done.txt").exists()

    (tmp_path / "hold").unlink()
    rerun = through_slurm(tmp_path, cluster, snakefile=snakefile, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-5000:]
    assert (tmp_path / "done.txt").is_file()


def running_job(env: dict[str, str], timeout_s: float = 120) -> str:
    """The id of the one running job, once squeue shows it running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "--noheader", "--states=RUNNING", "-o", "%i"],
                                env=env, stdout=subprocess.PIPE, text=True, timeout=30)
        jobs = listed.stdout.split()
        if jobs:
            return jobs[0]
        time.sleep(1)
    raise AssertionError(f"no job was running after {timeout_s} s")
