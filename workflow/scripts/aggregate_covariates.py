"""Rule aggregate_covariates: the tables behind paper Fig. 2e,f and the check of its claim.

- ``gearys_c.csv``: one row per (method, gene), all methods.
- ``ground_truth.csv``: one row per method.
- ``summary.csv``: per method, the median Geary's C of the marker and the nuisance genes
  (the centre lines of the box plots in Fig. 2e,f).
- ``claim_check.csv``: the paper's claim, scVI-cc against scVI: conditioning on the
  nuisance genes raises their median Geary's C (the graph stops following cell cycle and
  sex) while the markers' median rises by no more than ``marker_tolerance`` (biology kept).
"""

import logging

import pandas as pd
from workflow_helpers import logged_to, write_csv

log = logging.getLogger(snakemake.rule)


def summarize(gearys: pd.DataFrame, display_names: dict[str, str]) -> pd.DataFrame:
    """Per method: number of scored genes and median Geary's C of each gene set."""
    grouped = gearys.groupby(["method", "gene_set"], sort=False)["gearys_c"]
    wide = grouped.agg(["median", "count"]).unstack("gene_set")
    summary = pd.DataFrame(
        {
            "method": wide.index,
            "display_name": [display_names[m] for m in wide.index],
            "n_marker_genes": wide[("count", "marker")].to_numpy(),
            "median_gearys_c_markers": wide[("median", "marker")].to_numpy(),
            "n_nuisance_genes": wide[("count", "nuisance")].to_numpy(),
            "median_gearys_c_nuisance": wide[("median", "nuisance")].to_numpy(),
        }
    )
    return summary.set_index("method").loc[list(display_names)].reset_index()


def check_claim(summary: pd.DataFrame, marker_tolerance: float) -> pd.DataFrame:
    """The claim of Fig. 2e,f as numbers and booleans, scVI-cc minus scVI."""
    medians = summary.set_index("method")
    rows = []
    for claim, column, threshold, passes in [
        ("scVI-cc removes the nuisance signal", "median_gearys_c_nuisance", 0.0,
         lambda d: d > 0.0),
        ("scVI-cc keeps the marker signal", "median_gearys_c_markers", marker_tolerance,
         lambda d: d <= marker_tolerance),
    ]:
        scvi, scvi_cc = medians.loc["scvi", column], medians.loc["scvi_cc", column]
        rows.append(
            {
                "claim": claim,
                "quantity": column,
                "scvi": scvi,
                "scvi_cc": scvi_cc,
                "difference": scvi_cc - scvi,
                "criterion": "difference > 0" if threshold == 0.0
                else f"difference <= {threshold}",
                "holds": bool(passes(scvi_cc - scvi)),
            }
        )
    checks = pd.DataFrame(rows)
    overall = {
        "claim": "Fig. 2e,f: scVI-cc removes nuisance signal and keeps markers",
        "quantity": "both of the above",
        "holds": bool(checks["holds"].all()),
    }
    return pd.concat([checks, pd.DataFrame([overall])], ignore_index=True)


def main(
    gearys_paths: list[str],
    ground_truth_paths: list[str],
    display_names: dict[str, str],
    marker_tolerance: float,
    outputs: dict[str, str],
) -> None:
    gearys = pd.concat([pd.read_csv(p) for p in gearys_paths], ignore_index=True)
    gearys.insert(gearys.columns.get_loc("method") + 1, "display_name",
                  gearys["method"].map(display_names))
    ground_truth = pd.concat([pd.read_csv(p) for p in ground_truth_paths], ignore_index=True)
    ground_truth.insert(1, "display_name", ground_truth["method"].map(display_names))

    summary = summarize(gearys, display_names)
    claim = check_claim(summary, marker_tolerance)
    log.info("summary:\n%s", summary.to_string(index=False))
    log.info("claim check:\n%s", claim.to_string(index=False))

    write_csv(gearys, outputs["gearys_c"])
    write_csv(ground_truth, outputs["ground_truth"])
    write_csv(summary, outputs["summary"])
    write_csv(claim, outputs["claim_check"])


with logged_to(snakemake.log[0]):
    main(
        gearys_paths=list(snakemake.input.gearys_c),
        ground_truth_paths=list(snakemake.input.ground_truth),
        display_names=dict(snakemake.params.display_names),
        marker_tolerance=snakemake.params.marker_tolerance,
        outputs=dict(snakemake.output.items()),
    )
