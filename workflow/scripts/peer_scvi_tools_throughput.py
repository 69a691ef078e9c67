"""Peer measurement for the throughput benchmark: scvi-tools' SCVI on the same data.

Runs INSIDE the peer environment (``envs/scvi-tools.lock``: scvi-tools 1.4.2, torch
2.13.0), as a subprocess of ``scprob.bench.throughput``; it is the only file of the project
that imports ``scvi``, and it imports nothing from ``scprob``. It reads the counts and the
train/validation split that scprob uses, trains scvi-tools' SCVI with the same network
(ZINB, ``n_latent=10``, ``n_hidden=128``, one layer, gene dispersion, batch norm,
dropout 0.1, KL warm-up over 400 epochs, Adam lr 1e-3) for the same epochs, validating
once per epoch as scprob does, and writes one JSON record:

    cells_per_s    (training cells × epochs) / wall seconds of ``model.train``
    elbo_validation  scvi-tools' ``get_elbo`` on the validation cells: the mean per-cell
                   ELBO, higher is better (1.4.2 returns minus its loss; the reconstruction
                   includes log x!), the convention scprob's ``SCVI.get_elbo`` uses too

Protocol: one untimed warm-up fit of ``warmup_batches`` minibatches on a separate model
(first-call costs of the libraries), then a fresh model, seeded, timed over ``train``.

    python peer_scvi_tools_throughput.py --data counts.h5ad --split split.npz \
        --batch-size 128 --epochs 3 --seed 0 --threads 2 --accelerator cpu --out peer.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="h5ad with raw counts in X, obs['batch']")
    parser.add_argument("--split", required=True, help="npz with train and validation indices")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--warmup-batches", type=int, default=20)
    parser.add_argument("--out", required=True)
    return parser.parse_args()


def make_model(adata: ad.AnnData) -> Any:  # a scvi.model.SCVI
    import scvi

    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    return scvi.model.SCVI(
        adata,
        n_latent=10,
        n_hidden=128,
        n_layers=1,
        dropout_rate=0.1,
        gene_likelihood="zinb",
        dispersion="gene",
    )


def fit(model: Any, epochs: int, batch_size: int, split: list[np.ndarray], accelerator: str,
        **trainer_kwargs: object) -> None:
    model.train(
        max_epochs=epochs,
        batch_size=batch_size,
        accelerator=accelerator,
        devices=1,
        datasplitter_kwargs={"external_indexing": split},
        check_val_every_n_epoch=1,  # scprob validates every epoch; scvi-tools by default never
        plan_kwargs={"lr": 1e-3, "weight_decay": 1e-6, "eps": 0.01, "n_epochs_kl_warmup": 400},
        enable_progress_bar=False,
        enable_checkpointing=False,
        logger=False,
        **trainer_kwargs,
    )


def main() -> None:
    args = parse_arguments()
    warnings.filterwarnings("ignore")
    import scvi

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    adata = ad.read_h5ad(args.data)
    with np.load(args.split) as arrays:
        train, validation = arrays["train"].astype(np.int64), arrays["validation"].astype(np.int64)
    split = [train, validation, np.array([], dtype=np.int64)]

    scvi.settings.seed = args.seed
    warm = make_model(adata.copy())
    fit(warm, 1, args.batch_size, split, args.accelerator,
        limit_train_batches=args.warmup_batches, limit_val_batches=1)
    del warm

    scvi.settings.seed = args.seed
    model = make_model(adata)
    start = time.perf_counter()
    fit(model, args.epochs, args.batch_size, split, args.accelerator)
    wall = time.perf_counter() - start
    elbo = float(model.get_elbo(indices=validation, batch_size=1024))

    record = {
        "engine": "scvi-tools",
        "version": scvi.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "accelerator": args.accelerator,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "n_train_cells": len(train),
        "n_validation_cells": len(validation),
        "wall_s": wall,
        "cells_per_s": len(train) * args.epochs / wall,
        "elbo_validation": elbo,
        "elbo_convention": "scvi.model.SCVI.get_elbo: mean per-cell ELBO (log-likelihood "
                           "incl. log x! minus KL), higher is better",
    }
    Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
