"""What every rule script shares: logging into the rule's log, reading inputs with a
clear error, atomic outputs, thread limits, and the on-disk forms of a method's
representation and of a latent space.

Snakemake puts this folder on ``sys.path`` of every ``script:``, so a script imports this
module by name. Keep it free of study logic: that belongs in the ``scprob`` package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

# Environments that do not install scprob (the conda environments of --sdm conda) import
# it from this checkout; an installed scprob (make setup) takes precedence.
if importlib.util.find_spec("scprob") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from scprob.bench.baselines import Representation

LATENT_KEY = "X_latent"


class UnreadableInputError(RuntimeError):
    """An input file of the rule exists but cannot be read: it must be rebuilt."""


@contextlib.contextmanager
def logged_to(log_path: str | os.PathLike[str]) -> Iterator[None]:
    """Send the script's stdout, stderr, warnings and logging records to ``log_path``.

    An exception leaving the block is written to the log with its traceback and raised
    again, so Snakemake marks the job failed and points at the log that explains why.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as stream:
        logging.basicConfig(
            stream=stream,
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            force=True,
        )
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                yield
            except BaseException:
                traceback.print_exc(file=stream)
                raise
            finally:
                logging.shutdown()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, moved onto ``path`` only if the block succeeds.

    The temporary name keeps the suffix, so writers that infer the format from it
    (``savefig``, ``write_h5ad``) behave the same. A failed block leaves no file behind,
    and a reader never sees a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` (without its index) to ``path`` atomically."""
    with atomic_output(path) as partial:
        frame.to_csv(partial, index=False)


def write_json(document: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``document`` as indented JSON to ``path`` atomically (numpy numbers as floats)."""
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(document, indent=2, default=float) + "\n")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON input of the rule; an unreadable one is reported as one to rebuild."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise _unreadable(path, error) from None


def read_h5ad_input(path: str | os.PathLike[str], backed: bool = False) -> ad.AnnData:
    """An h5ad input of the rule, read whole (or ``backed`` read-only, obs and var only).

    A file that exists but cannot be read (truncated by a job killed while writing it
    outside Snakemake's control, a full disk, a copy cut short) raises
    :class:`UnreadableInputError` naming the file and how to rebuild it, instead of
    the reader's deep traceback.
    """
    try:
        return ad.read_h5ad(path, backed="r" if backed else None)
    except FileNotFoundError:
        raise
    except Exception as error:  # h5py and anndata raise OSError, KeyError, ValueError...
        raise _unreadable(path, error) from None


def read_subsample(path: str | os.PathLike[str], n_cells: int) -> ad.AnnData:
    """A subsample of the runtime study, which must hold ``n_cells`` cells."""
    adata = read_h5ad_input(path)
    if adata.n_obs != n_cells:
        raise ValueError(f"{path} holds {adata.n_obs} cells, expected {n_cells}; rebuild it "
                         f"with `--forcerun {path}` (rule subsample_heart).")
    return adata


def _unreadable(path: str | os.PathLike[str], error: BaseException) -> UnreadableInputError:
    return UnreadableInputError(
        f"input {path} cannot be read ({type(error).__name__}: {error}); it is truncated or "
        f"corrupt and must be rebuilt: run Snakemake again with `--forcerun {path}` (or "
        "delete the file and run it again)."
    )


def limit_threads(n_threads: int) -> None:
    """Hold torch, BLAS/OpenMP and numba to the ``threads:`` Snakemake granted the job, so
    parallel jobs do not oversubscribe the cores."""
    import numba
    import threadpoolctl
    import torch

    torch.set_num_threads(n_threads)
    threadpoolctl.threadpool_limits(n_threads)
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))


# One method's representation on disk ------------------------------------------------------
# obs: the simulated ground truth; obsm["X_rep"]: the embedding the graph was built on;
# obsp: the kNN graph; obsm["X_umap"]: its 2-D layout; uns: method and display name.


def write_representation(
    path: str | os.PathLike[str],
    obs: pd.DataFrame,
    rep: Representation,
    umap: np.ndarray,
    method: str,
) -> None:
    """Store ``rep`` ``(n_cells, …)`` of ``method`` with the cells' ``obs`` as a small h5ad."""
    adata = ad.AnnData(obs=obs.copy())
    adata.obsm["X_rep"] = np.asarray(rep.embedding, dtype=np.float32)
    adata.obsm["X_umap"] = np.asarray(umap, dtype=np.float32)
    adata.obsp["connectivities"] = rep.connectivities
    adata.obsp["distances"] = rep.distances
    adata.uns["method"] = method
    adata.uns["display_name"] = rep.name
    adata.uns["graph_only"] = bool(rep.graph_only)
    with atomic_output(path) as partial:
        adata.write_h5ad(partial)


def read_representation(path: str | os.PathLike[str]) -> tuple[Representation, ad.AnnData]:
    """The :class:`Representation` stored by :func:`write_representation`, and the AnnData
    (obs = ground truth, ``obsm["X_umap"]``)."""
    adata = read_h5ad_input(path)
    rep = Representation(
        embedding=adata.obsm["X_rep"],
        connectivities=adata.obsp["connectivities"].tocsr(),
        distances=adata.obsp["distances"].tocsr(),
        name=str(adata.uns["display_name"]),
        graph_only=bool(adata.uns["graph_only"]),
    )
    return rep, adata


# A latent space on disk ---------------------------------------------------------------------
# obs: the cells' design and truth; obsm["X_latent"]: (n_cells, n_latent); uns: the model.


def write_latent(path: str | os.PathLike[str], obs: pd.DataFrame, latent: np.ndarray,
                 model: str) -> None:
    """Store ``latent`` ``(n_cells, n_latent)`` with the cells' ``obs`` as a small h5ad."""
    if latent.shape[0] != obs.shape[0]:
        raise ValueError(f"{latent.shape[0]} latent rows for {obs.shape[0]} cells.")
    adata = ad.AnnData(obs=obs.copy())
    adata.obsm[LATENT_KEY] = np.asarray(latent, dtype=np.float32)
    adata.uns["model"] = model
    with atomic_output(path) as partial:
        adata.write_h5ad(partial)


def read_latent(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The cells' obs and their latents ``(n_cells, n_latent)`` of :func:`write_latent`."""
    adata = read_h5ad_input(path)
    return adata.obs, np.asarray(adata.obsm[LATENT_KEY])
