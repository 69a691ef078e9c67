"""The claims tables: ``holds`` is the criterion evaluated on the numbers, never set by
hand, and each study's claim check reads the right numbers with the columns the
workflow's claim_check.csv has always had."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scprob.bench import covariates, scarches
from scprob.bench.claims import Claim, Criterion, claims_table


@pytest.mark.parametrize(
    ("operator", "threshold", "value", "holds"),
    [(">", 0.0, 0.1, True), (">", 0.0, 0.0, False), (">=", -0.02, -0.02, True),
     (">=", -0.02, -0.03, False), ("<=", 0.05, 0.051, False), ("==", 0.0, 0.0, True),
     ("==", 0.0, 1e-12, False), (">=", 5.0, np.nan, False)],
)
def test_criterion_is_evaluated_on_the_value(operator: str, threshold: float, value: float,
                                             holds: bool) -> None:
    assert Criterion("value", operator, threshold).holds(value) is holds


def test_criterion_text_is_written_from_its_operator_and_threshold() -> None:
    assert str(Criterion("scarches - de_novo", ">=", -0.02)) == "scarches - de_novo >= -0.02"
    assert str(Criterion("de_novo / scarches", ">=", 5)) == "de_novo / scarches >= 5"
    assert str(Criterion("difference", ">", 0.0)) == "difference > 0"
    with pytest.raises(ValueError, match="operator '=>' is not one of"):
        Criterion("value", "=>", 1.0)


def test_a_row_whose_numbers_violate_its_criterion_does_not_hold() -> None:
    met = Claim("fast", "seconds", {"a": 10.0, "b": 60.0}, 6.0,
                Criterion("b / a", ">=", 5))
    violated = Claim("accurate", "accuracy", {"a": 0.80, "b": 0.90}, -0.10,
                     Criterion("a - b", ">=", -0.02))
    table = claims_table([met, violated], "both claims")
    assert list(table.columns) == ["claim", "quantity", "a", "b", "value", "criterion", "holds"]
    assert table["holds"].tolist() == [True, False, False]
    assert table["holds"].dtype == bool
    assert table.loc[1, "criterion"] == "a - b >= -0.02"
    # The overall row fills only its claim, quantity and verdict.
    assert table.loc[2, ["claim", "quantity"]].tolist() == ["both claims", "all of the above"]
    assert table.loc[2, ["a", "b", "value", "criterion"]].isna().all()
    # Changing the numbers changes the verdict: nothing is hand-set.
    fixed = Claim("accurate", "accuracy", {"a": 0.89, "b": 0.90}, -0.01,
                  Criterion("a - b", ">=", -0.02))
    assert claims_table([met, fixed], "both claims")["holds"].tolist() == [True, True, True]
    with pytest.raises(ValueError, match="at least one claim"):
        claims_table([], "nothing")


def test_covariates_claim_reads_the_median_differences() -> None:
    summary = pd.DataFrame({
        "method": ["scvi", "scvi_cc"],
        "median_gearys_c_markers": [0.40, 0.48],
        "median_gearys_c_nuisance": [0.60, 0.90],
    })
    table = covariates.claim_check(summary, marker_tolerance=0.05)
    assert list(table.columns) == ["claim", "quantity", "scvi", "scvi_cc", "difference",
                                   "criterion", "holds"]
    assert table["criterion"].tolist()[:2] == ["difference > 0", "difference <= 0.05"]
    assert np.allclose(table["difference"][:2], [0.30, 0.08])
    # Nuisance removed, but the markers rose by 0.08 > 0.05: the second claim fails.
    assert table["holds"].tolist() == [True, False, False]


def _scarches_inputs(accuracy_gap: float) -> tuple[dict, dict, dict]:
    cells = [f"c{i}" for i in range(100)]
    truth = np.array(["B", "T"] * 50)
    de_novo = truth.copy()
    scarches_labels = truth.copy()
    n_wrong = round(accuracy_gap * 100)
    scarches_labels[:n_wrong] = np.where(truth[:n_wrong] == "B", "T", "B")
    frame = {"cell": cells, "donor": ["d1"] * 50 + ["d2"] * 50,
             "condition": ["healthy"] * 50 + ["severe"] * 50, "batch": ["q1"] * 100,
             "true_label": truth}
    predictions = {"scarches": pd.DataFrame({**frame, "predicted_label": scarches_labels}),
                   "de_novo": pd.DataFrame({**frame, "predicted_label": de_novo})}
    timings = {
        stage: {"n_cells": 100, "epochs_run": 3, "threads": 1, "fit_s": fit, "fit_cpu_s": fit,
                "sections": {"train": {"seconds": fit / 2}},
                "reference_latent_max_abs_change": 0.0}
        for stage, fit in (("reference", 40.0), ("query", 10.0), ("de_novo", 70.0))
    }
    jobs = {stage: {"s": 100.0, "cpu_time": 90.0} for stage in timings}
    return predictions, timings, jobs


@pytest.mark.parametrize(("gap", "accurate"), [(0.01, True), (0.05, False)])
def test_scarches_claims_follow_accuracy_and_speed(gap: float, accurate: bool) -> None:
    predictions, timings, jobs = _scarches_inputs(gap)
    tables = scarches.study_tables(predictions, timings, jobs, ["B"], 35,
                                   accuracy_tolerance=0.02, min_speedup=5)
    claims = tables["claim_check"]
    assert list(claims.columns) == ["claim", "quantity", "scarches", "de_novo", "value",
                                    "criterion", "holds"]
    assert claims.loc[0, "value"] == pytest.approx(-gap)
    assert claims.loc[1, "value"] == pytest.approx(7.0)  # 70 s / 10 s
    assert claims["holds"].tolist() == [accurate, True, True, True, accurate]
    summary = tables["summary"].set_index("quantity")
    assert summary.loc["de_novo_over_query_fit", "ours"] == pytest.approx(7.0)
    assert tables["runtime"]["train_s"].tolist() == [20.0, 5.0, 35.0]


def test_scarches_tables_refuse_predictions_of_different_cells() -> None:
    predictions, timings, jobs = _scarches_inputs(0.0)
    predictions["de_novo"] = predictions["de_novo"].iloc[::-1].reset_index(drop=True)
    with pytest.raises(ValueError, match="list different query cells"):
        scarches.study_tables(predictions, timings, jobs, ["B"], 35, 0.02, 5)
