"""Peer run for the CellAssign study: scvi-tools' CellAssign on the same data.

Runs INSIDE the peer environment (``envs/scvi-tools.lock``: scvi-tools 1.4.2, torch
2.13.0), as a subprocess of ``scprob.bench.cellassign.run_peer``; it imports nothing from
``scprob``. As scvi-tools' documentation sets it up: size factors from each cell's total
count over all genes (over their mean), the data cut to the marker genes, then
``CellAssign(...).train()`` with its defaults (400 epochs, minibatches of 1,024, lr 3e-3,
early stopping) and an optional design covariate. Writes the assignment probabilities
(cells × types, CSV with a ``cell`` index column) and a JSON record of the fit's time.

    python peer_scvi_tools_cellassign.py --counts cells.h5ad --markers markers.csv \
        --seed 0 --threads 1 [--covariate patient] --probabilities out.csv --timing out.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from importlib.metadata import version

import anndata as ad
import numpy as np
import pandas as pd
import torch


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", required=True, help="h5ad, raw counts in X")
    parser.add_argument("--markers", required=True, help="CSV, genes × types, binary")
    parser.add_argument("--covariate", default=None, help="obs column of the design")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probabilities", required=True)
    parser.add_argument("--timing", required=True)
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import scvi
    from scvi.external import CellAssign

    scvi.settings.seed = args.seed
    adata = ad.read_h5ad(args.counts)
    markers = pd.read_csv(args.markers, index_col=0)
    if "size_factor" not in adata.obs:  # published ones (the paper's data) are kept
        totals = np.asarray(adata.X.sum(1)).ravel()
        adata.obs["size_factor"] = totals / totals.mean()
    markers_data = adata[:, markers.index].copy()

    wall, cpu = time.perf_counter(), time.process_time()
    CellAssign.setup_anndata(markers_data, size_factor_key="size_factor",
                             batch_key=args.covariate)
    model = CellAssign(markers_data, markers)
    model.train(accelerator="cpu", enable_progress_bar=False)
    probabilities = model.predict()
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu

    probabilities.index = adata.obs_names
    probabilities.index.name = "cell"
    probabilities.to_csv(args.probabilities)
    history = model.history.get("elbo_train")
    record = {
        "method": "scvi-tools", "version": version("scvi-tools"), "seconds": seconds,
        "cpu_seconds": cpu_seconds, "epochs": len(history) if history is not None else None,
        "n_cells": adata.n_obs, "n_markers": markers.shape[0], "threads": args.threads,
    }
    with open(args.timing, "w") as stream:
        json.dump(record, stream, indent=2)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
