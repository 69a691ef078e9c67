"""Shared fixtures: small count matrices with known structure, and running the workflow."""

from __future__ import annotations

import hashlib
import os

# As the workflow does (Snakefile): sleeping OpenMP waiters, read when torch loads OpenMP.
# With spinning ones a 2-thread fit slows down tens of times while anything else (a
# workflow test's jobs, another process) holds a core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TEST_CONFIG = REPO / "config" / "test.yaml"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, to compare with a recorded checksum."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_snakemake(workdir: Path, *args: str, configfiles: Sequence[Path] = (TEST_CONFIG,)
                  ) -> subprocess.CompletedProcess[str]:
    """Run the repository's Snakefile in ``workdir`` on 2 cores; ``args`` are targets and
    flags. The config files come last (``--configfile`` takes every argument after it)."""
    return subprocess.run(
        [str(SNAKEMAKE), *args, "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), "--cores", "2",
         "--configfile", *map(str, configfiles)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )


def make_counts_adata(
    n_cells: int = 300, n_genes: int = 60, seed: int = 0, sparse: bool = True
) -> ad.AnnData:
    """NB counts from 3 clusters, two batches and one continuous covariate."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 3, n_cells)
    programs = rng.normal(0, 1.0, (3, n_genes))
    covariate = rng.normal(size=n_cells)
    log_mu = 1.0 + programs[cluster] + 0.8 * np.outer(covariate, rng.normal(size=n_genes))
    mu = np.exp(log_mu)
    counts = rng.negative_binomial(5, 5 / (5 + mu)).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts) if sparse else counts)
    adata.obs_names = [f"cell_{i}" for i in range(n_cells)]
    adata.var_names = [f"gene_{j}" for j in range(n_genes)]
    adata.obs["batch"] = pd.Categorical(np.where(rng.random(n_cells) < 0.5, "b1", "b2"))
    adata.obs["cluster"] = pd.Categorical(cluster.astype(str))
    adata.obs["donor"] = pd.Categorical(rng.choice(["d1", "d2", "d3"], n_cells))
    adata.obs["nuisance"] = covariate
    adata.layers["counts"] = adata.X.copy()
    return adata


@pytest.fixture
def counts_adata() -> ad.AnnData:
    return make_counts_adata()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared test data folder {SHARED_DATA} is absent")
    return SHARED_DATA
