"""Peer run for the deconvolution study: scvi-tools' Stereoscope on the same data.

Runs INSIDE the peer environment (``envs/scvi-tools.lock``: scvi-tools 1.4.2, torch
2.13.0), as a subprocess of ``scprob.bench.deconvolution.run_peer``; it imports nothing
from ``scprob``. It fits ``scvi.external.RNAStereoscope`` on the reference and
``SpatialStereoscope`` on the spots with scvi-tools' own defaults (lr 0.01, minibatches of
128) for the epochs asked, on the genes the two share, and writes the proportions
(spots × types, CSV with a ``spot`` index column) and a JSON record of the fits' times.

    python peer_scvi_tools_stereoscope.py --reference ref.h5ad --spots spots.h5ad \
        --labels-key cell_type --rna-epochs 100 --spatial-epochs 1000 --seed 0 \
        --threads 1 --proportions out.csv --timing out.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from importlib.metadata import version

import anndata as ad
import numpy as np
import torch


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="h5ad, raw counts in X")
    parser.add_argument("--spots", required=True, help="h5ad, raw counts in X")
    parser.add_argument("--labels-key", required=True)
    parser.add_argument("--rna-epochs", type=int, required=True)
    parser.add_argument("--spatial-epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--proportions", required=True)
    parser.add_argument("--timing", required=True)
    return parser.parse_args()


def timed(call: object) -> tuple[float, float]:
    """Wall and CPU seconds of ``call()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import scvi
    from scvi.external import RNAStereoscope, SpatialStereoscope

    scvi.settings.seed = args.seed
    reference, spots = ad.read_h5ad(args.reference), ad.read_h5ad(args.spots)
    shared = reference.var_names.intersection(spots.var_names)
    reference, spots = reference[:, shared].copy(), spots[:, shared].copy()
    spots = spots[np.asarray(spots.X.sum(1)).ravel() > 0].copy()

    RNAStereoscope.setup_anndata(reference, labels_key=args.labels_key)
    rna_model = RNAStereoscope(reference)
    rna_seconds, rna_cpu = timed(lambda: rna_model.train(
        max_epochs=args.rna_epochs, accelerator="cpu", enable_progress_bar=False))
    SpatialStereoscope.setup_anndata(spots)
    spatial_model = SpatialStereoscope.from_rna_model(spots, rna_model)
    spatial_seconds, spatial_cpu = timed(lambda: spatial_model.train(
        max_epochs=args.spatial_epochs, accelerator="cpu", enable_progress_bar=False))

    proportions = spatial_model.get_proportions()
    proportions.index.name = "spot"
    proportions.to_csv(args.proportions)
    record = {
        "method": "scvi-tools", "version": version("scvi-tools"),
        "rna_epochs": args.rna_epochs, "spatial_epochs": args.spatial_epochs,
        "rna_seconds": rna_seconds, "rna_cpu_seconds": rna_cpu,
        "spatial_seconds": spatial_seconds, "spatial_cpu_seconds": spatial_cpu,
        "n_spots": spots.n_obs, "n_genes": spots.n_vars, "threads": args.threads,
    }
    with open(args.timing, "w") as stream:
        json.dump(record, stream, indent=2)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
