"""The fit-order benchmark: three fits per process over CSR and dense input, each compared
with the fastest fit of its format; its rule on the test config."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from scprob.bench.fit_order import fit_order_table, fit_orders
from tests.conftest import TEST_CONFIG, run_snakemake

TARGETS = [f"results/benchmarks/fit_order.{ext}" for ext in ("json", "csv", "png", "pdf")]


def test_every_format_is_timed_first_second_and_third() -> None:
    orders = fit_orders()
    assert orders == [["csr", "csr", "dense"], ["dense", "dense", "csr"]]
    positions = {(fmt, k) for order in orders for k, fmt in enumerate(order, start=1)}
    assert positions == {(fmt, k) for fmt in ("csr", "dense") for k in (1, 2, 3)}


def test_spread_is_each_fit_over_the_fastest_of_its_format_and_setting() -> None:
    def fit(position: int, data_format: str, setting: str, wall: float) -> dict:
        return {"position": position, "format": data_format, "kernel_setting": setting,
                "wall_s": wall}

    document = {"sequences": [
        {"formats": ["csr", "csr", "dense"],
         "fits": [fit(1, "csr", "compiled", 10.0), fit(2, "csr", "compiled", 30.0),
                  fit(3, "dense", "compiled", 12.0)]},
        {"formats": ["dense", "dense", "csr"],
         "fits": [fit(1, "dense", "compiled", 11.0), fit(2, "dense", "compiled", 11.0),
                  fit(3, "csr", "compiled", 10.5)]},
        {"formats": ["csr", "csr", "dense"],
         "fits": [fit(1, "csr", "eager", 20.0), fit(2, "csr", "eager", 20.0),
                  fit(3, "dense", "eager", 40.0)]},
    ]}
    table = fit_order_table(document)
    assert table["spread"].tolist() == pytest.approx([1.0, 3.0, 12 / 11, 1.0, 1.0, 1.05, 1.0,
                                                      1.0, 1.0])
    assert table["order"].iloc[0] == "csr -> csr -> dense"


@pytest.mark.workflow
def test_fit_order_rule_times_three_fits_per_process(tmp_path) -> None:
    pytest.importorskip("snakemake")
    run = run_snakemake(tmp_path, *TARGETS)
    assert run.returncode == 0, run.stdout[-5000:]
    settings = yaml.safe_load(TEST_CONFIG.read_text())["benchmarks"]["fit_order"]
    document = json.loads((tmp_path / TARGETS[0]).read_text())
    assert [s["formats"] for s in document["sequences"]] == fit_orders()
    assert document["tolerance"] == settings["tolerance"]
    table = pd.read_csv(tmp_path / TARGETS[1])
    assert len(table) == 6 * len(settings["kernels"])
    assert set(table["kernel_setting"]) == set(settings["kernels"]) == {"eager"}
    assert (table["likelihood_kernel"] == "eager").all()
    assert (table["graphs_compiled"] == 0).all()
    assert (table["wall_s"] > 0).all() and (table["cpu_s"] > 0).all()
    assert all(s["n_cells"] == settings["n_cells"] for s in document["sequences"])
    fastest = table.groupby(["kernel_setting", "format"])["spread"].min()
    assert (fastest == 1.0).all() and (table["spread"] >= 1.0).all()
    assert table["within_tolerance"].tolist() == (table["spread"] <= 1.15).tolist()
    assert (tmp_path / TARGETS[2]).read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / TARGETS[3]).read_bytes().startswith(b"%PDF")
    assert (tmp_path / "logs/benchmarks/benchmark_fit_order.log").is_file()
    assert (tmp_path / "results/benchmarks/benchmark_fit_order.tsv").is_file()


@pytest.mark.workflow
def test_fit_order_on_more_cells_than_the_atlas_stops_the_dry_run(tmp_path) -> None:
    pytest.importorskip("snakemake")
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["benchmarks"]["fit_order"]["n_cells"] = 5000
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    run = run_snakemake(tmp_path, "-n", TARGETS[0], configfiles=[bad])
    assert run.returncode != 0
    assert ("benchmarks.fit_order.n_cells is 5000, more than the simulated atlas holds "
            "(1200, the largest of scaling.n_cells)") in run.stdout


def test_repeats_keep_each_fits_fastest_run() -> None:
    def sequence(repeat: int, walls: list[float]) -> dict:
        formats = ["csr", "csr", "dense"]
        return {"formats": formats, "repeat": repeat, "fits": [
            {"position": k, "format": f, "kernel_setting": "compiled", "wall_s": w}
            for k, (f, w) in enumerate(zip(formats, walls, strict=True), start=1)]}

    table = fit_order_table({"sequences": [sequence(1, [10.0, 14.0, 9.0]),
                                           sequence(2, [12.0, 11.0, 8.0])]})
    assert table["wall_s"].tolist() == [10.0, 11.0, 8.0]
    assert table["wall_s_runs"].tolist() == ["10.00;12.00", "14.00;11.00", "9.00;8.00"]
    assert table["spread"].tolist() == pytest.approx([1.0, 1.1, 1.0])
