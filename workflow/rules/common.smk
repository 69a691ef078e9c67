# Helpers shared by the rule files (names, paths, the targets of each study).
# Rule files hold rules only; anything computed lives here.

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

# Columns of the simulated ground truth (obs of simulate_wing_disc) that the
# ground-truth scores read: the biology to keep and the nuisance to remove.
COVARIATES_TRUTH = {
    "state_key": "cell_state",
    "nuisance_continuous_keys": ["cycle_score", "s_score", "g2m_score"],
    "nuisance_categorical_keys": ["sex"],
}

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
