"""The deconvolution study (paper Fig. 5, Supp. Fig. 5) end to end on the test config, and
the scores and claims it is built from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scprob.bench.deconvolution import (
    accuracy_table,
    convergence_table,
    deconvolution_claims,
    per_type_correlations,
)
from tests.conftest import SHARED_DATA, TEST_CONFIG, run_snakemake

SETTINGS = yaml.safe_load(TEST_CONFIG.read_text())["deconvolution"]
TARGETS = [
    "results/deconvolution/tables/accuracy.csv",
    "results/deconvolution/tables/convergence.csv",
    "results/deconvolution/tables/claim_check.csv",
    "results/deconvolution/figures/fig5g_proportion_maps.png",
    "results/deconvolution/figures/supp_fig5_convergence.png",
    "results/deconvolution/figures/fig5_per_type_spearman.pdf",
]


def _truth(n_spots: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.dirichlet(np.ones(3), n_spots), columns=["A", "B", "C"],
                        index=[f"s{i}" for i in range(n_spots)])


# Scores and claims ---------------------------------------------------------------------


def test_correlations_are_per_type_across_spots_and_match_spots_by_name() -> None:
    truth = _truth()
    estimated = truth.copy()
    estimated["B"] = truth["B"] ** 3  # monotone: Spearman 1, Pearson below 1
    estimated["C"] = truth["C"].to_numpy()[::-1]
    shuffled = estimated.sample(frac=1.0, random_state=0)[["C", "A", "B"]]
    scores = per_type_correlations(shuffled, truth).set_index("cell_type")
    assert scores.loc["A"].tolist() == pytest.approx([1.0, 1.0])
    assert scores.loc["B", "spearman"] == pytest.approx(1.0)
    assert scores.loc["B", "pearson"] < 0.99
    assert scores.loc["C", "spearman"] < 0.5


def test_a_constant_type_scores_nan_and_missing_types_or_spots_are_named() -> None:
    truth = _truth()
    estimated = truth.assign(A=0.5)
    assert np.isnan(per_type_correlations(estimated, truth).set_index("cell_type")
                    .loc["A", "spearman"])
    with pytest.raises(ValueError, match=r"lack the types \['C'\]"):
        per_type_correlations(truth.drop(columns="C"), truth)
    with pytest.raises(ValueError, match="lack 2 spots of the truth"):
        per_type_correlations(truth.iloc[2:], truth)


def test_convergence_summarises_each_run_and_claims_read_their_targets() -> None:
    truth = _truth()
    rng = np.random.default_rng(1)
    noisy = (truth + rng.normal(0, 0.2, truth.shape)).clip(lower=0)
    runs = {("ours", 10, 100): noisy, ("ours", 10, 1000): truth,
            ("peer", 10, 1000): noisy}
    accuracy = accuracy_table(runs, truth)
    assert len(accuracy) == 3 * 3
    convergence = convergence_table(accuracy, {key: 2.0 for key in runs})
    best = convergence[(convergence["method"] == "ours")
                       & (convergence["spatial_epochs"] == 1000)]
    assert best["mean_spearman"].item() == pytest.approx(1.0)
    assert (convergence["fit_seconds"] == 2.0).all()
    claims = deconvolution_claims(convergence, "ours", [(10, 1000, 0.9), (10, 100, 0.99)],
                                  peers=["peer"])
    assert claims["holds"].tolist() == [True, False, True, False]
    assert claims["criterion"].iloc[0] == "mean Spearman >= 0.9"
    with pytest.raises(ValueError, match="no single run of ours at 10 \\+ 5 epochs"):
        deconvolution_claims(convergence, "ours", [(10, 5, 0.5)])


# The workflow ---------------------------------------------------------------------------


@pytest.mark.workflow
def test_study_runs_on_the_test_config_and_recovers_the_truth(tmp_path: Path) -> None:
    run = run_snakemake(tmp_path, *TARGETS)
    assert run.returncode == 0, run.stdout[-5000:]
    for target in TARGETS:
        data = (tmp_path / target).read_bytes()
        assert len(data) > 100
    assert (tmp_path / TARGETS[3]).read_bytes().startswith(b"\x89PNG")
    runs = [(r, s) for r in SETTINGS["rna_epochs"] for s in SETTINGS["spatial_epochs"]]
    accuracy = pd.read_csv(tmp_path / TARGETS[0])
    assert len(accuracy) == len(runs) * 15  # 15 simulated cell types
    convergence = pd.read_csv(tmp_path / TARGETS[1])
    assert list(zip(convergence["rna_epochs"], convergence["spatial_epochs"],
                    strict=True)) == sorted(runs)
    assert (convergence["mean_spearman"] > 0.3).all()
    assert (convergence["fit_seconds"] > 0).all()
    claims = pd.read_csv(tmp_path / TARGETS[2])
    assert claims["holds"].all()
    proportions = pd.read_csv(
        tmp_path / "results/deconvolution/proportions/simulated"
        / f"scprob_{runs[-1][0]}_{runs[-1][1]}.csv",
        index_col="spot")
    assert np.allclose(proportions.sum(axis=1), 1.0, atol=1e-5)
    for log in ("simulate_hippocampus", "evaluate_deconvolution", "figures_deconvolution"):
        assert (tmp_path / f"logs/deconvolution/{log}.log").is_file()
    assert not (tmp_path / "results/deconvolution/data/real").exists()  # real: null


SPACEXR = SHARED_DATA / "visium_hippocampus_spacexr"


@pytest.mark.workflow
@pytest.mark.skipif(not SPACEXR.is_dir(), reason="the shared spacexr pair is not here")
def test_real_pair_is_read_fitted_and_mapped(tmp_path: Path) -> None:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["deconvolution"]["real"] = {"format": "spacexr", "visium": None,
                                       "folder": str(SPACEXR), "rna_epochs": 20,
                                       "spatial_epochs": 100, "map_types": ["CA1", "Denate"]}
    configfile = tmp_path / "real.yaml"
    configfile.write_text(yaml.safe_dump(config))
    targets = ["results/deconvolution/figures/fig5g_real_proportion_maps.png",
               "results/deconvolution/tables/real_agreement.csv"]
    run = run_snakemake(tmp_path, *targets, configfiles=[configfile])
    assert run.returncode == 0, run.stdout[-5000:]
    assert (tmp_path / targets[0]).read_bytes().startswith(b"\x89PNG")
    proportions = pd.read_csv(
        tmp_path / "results/deconvolution/proportions/real/scprob_20_100.csv", index_col="spot")
    assert proportions.shape == (313, 17)  # every spot has counts over the 124 shared genes
    assert np.allclose(proportions.sum(axis=1), 1.0, atol=1e-5)
    # Spots dominated by CA1 lie in one region: proportions carry spatial structure.
    assert proportions["CA1"].max() > 0.3
    agreement = pd.read_csv(tmp_path / targets[1])
    assert agreement.empty  # no peer configured in the tests


@pytest.mark.workflow
def test_a_target_without_its_run_stops_the_dry_run(tmp_path: Path) -> None:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["deconvolution"]["targets"] = [
        {"rna_epochs": 20, "spatial_epochs": 999, "min_mean_spearman": 0.5}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    run = run_snakemake(tmp_path, *TARGETS, "-n", configfiles=[bad])
    assert run.returncode != 0
    assert ("deconvolution.targets asks for 20 + 999 epochs, which is not a run: add them "
            "to deconvolution.rna_epochs and spatial_epochs.") in run.stdout


# Peers, through stand-ins of their environments ------------------------------------------


def _fake_environment(tmp_path: Path, body: str) -> Path:
    """A folder with a ``python`` that runs ``body`` (a Python program reading sys.argv)
    and a ``stereoscope`` command that does the same: a peer environment's stand-in."""
    import stat
    import sys

    folder = tmp_path / "env" / "bin"
    folder.mkdir(parents=True)
    program = folder / "program.py"
    program.write_text(body)
    for name in ("python", "stereoscope"):
        launcher = folder / name
        launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {program} \"$@\"\n")
        launcher.chmod(launcher.stat().st_mode | stat.S_IEXEC)
    return folder / "python"


def _tiny_pair() -> tuple:
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    reference = ad.AnnData(sp.csr_matrix(rng.poisson(2.0, (30, 6)).astype(np.float32)))
    reference.var_names = [f"g{i}" for i in range(6)]
    reference.obs_names = [f"c{i}" for i in range(30)]
    reference.obs["cell_type"] = pd.Categorical(rng.choice(["A", "B"], 30))
    counts = rng.poisson(3.0, (5, 7)).astype(np.float32)
    counts[2, :] = 0  # a spot without counts: left out, as ours does
    spots = ad.AnnData(sp.csr_matrix(counts))
    spots.var_names = ["g9"] + [f"g{i}" for i in range(6)]
    spots.obs_names = [f"s{i}" for i in range(5)]
    return reference, spots


ORIGINAL_CLI = '''
import sys
from pathlib import Path

import pandas as pd

args = sys.argv[1:]
value = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("-")}
st = pd.read_csv(value["--st_cnt"], sep="\\t", index_col=0)
sc = pd.read_csv(value["--sc_cnt"], sep="\\t", index_col=0)
assert list(sc.columns) == list(st.columns), "genes differ"
print("epochs", value["-sce"], value["-ste"], "lr", value["-lr"], "genes", len(st.columns))
out = Path(value["-o"]) / "st"
out.mkdir(parents=True)
w = pd.DataFrame({"A": 1.0, "B": 2.0, "noise": 1.0}, index=["0&-" + s for s in st.index])
w.to_csv(out / "W.2026.tsv", sep="\\t")
'''


def test_original_cli_reads_shared_genes_and_its_noise_column_is_dropped(tmp_path: Path) -> None:
    from scprob.bench.deconvolution import run_original

    python = _fake_environment(tmp_path, ORIGINAL_CLI)
    reference, spots = _tiny_pair()
    work = tmp_path / "work"
    work.mkdir()
    proportions, timing = run_original(python, reference, spots, "cell_type", 7, 11, 0.01,
                                       1, work, timeout_s=60)
    assert proportions.index.tolist() == ["s0", "s1", "s3", "s4"]  # empty spot s2 left out
    assert proportions.columns.tolist() == ["A", "B"]
    assert np.allclose(proportions["B"], 2 / 3)
    assert timing["n_genes"] == 6 and timing["n_spots"] == 4 and timing["fit_seconds"] > 0
    labels = pd.read_csv(work / "sc_labels.tsv", sep="\t", index_col=0)
    assert labels["cell_type"].tolist() == reference.obs["cell_type"].astype(str).tolist()


def test_peer_failures_and_missing_environments_are_named(tmp_path: Path) -> None:
    from scprob.bench.deconvolution import run_original, run_scvi_tools

    reference, spots = _tiny_pair()
    with pytest.raises(FileNotFoundError, match=r"the scvi-tools interpreter .* does not "
                       r"exist: create it with `make peer-env`"):
        run_scvi_tools(tmp_path / "none" / "python", "peer.py", "r.h5ad", "s.h5ad",
                       "cell_type", 1, 1, 0, 1, tmp_path, timeout_s=60)
    python = _fake_environment(tmp_path, "import sys\nprint('bad input')\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match=r"stereoscope 0.3 CLI failed \(exit 3\):\nbad input"):
        run_original(python, reference, spots, "cell_type", 1, 1, 0.01, 1, tmp_path,
                     timeout_s=60)


def test_agreement_compares_each_peer_with_ours_at_the_same_epochs() -> None:
    from scprob.bench.deconvolution import agreement_table

    truth = _truth()
    runs = {("scprob", 10, 100): truth, ("peer", 10, 100): truth.iloc[3:] ** 2,
            ("other", 10, 100): truth}
    agreement = agreement_table(runs, "scprob", ["peer"])
    assert agreement["method"].unique().tolist() == ["peer"]
    assert (agreement["n_spots"] == len(truth) - 3).all()
    assert agreement["spearman"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert agreement_table(runs, "scprob", []).empty
