"""The scanpy baselines of the covariates (paper Fig. 2) and runtime (Supp. Fig. 2)
studies, and the neighbour graphs every method is scored on.

Every method is reduced to the same object, a :class:`Representation`: a kNN graph over
the cells (scanpy's UMAP-style ``connectivities`` and ``distances``) plus the embedding it
was built from. All metrics (Geary's C, ground-truth scores) and UMAPs are computed from
the graph, so a method that corrects only the graph (bbknn) is scored exactly like one that
learns an embedding (scVI, Harmony). Learned latents go through :func:`neighbor_graph`
(``scanpy.pp.neighbors``, 15 neighbours), the same graph construction for every method
except bbknn, whose graph *is* the method.

The baselines (paper Methods), assembled once in :func:`run_baseline` from log-normalised
expression ``(n_cells, n_genes)``:

- **regress**: ``scanpy.pp.regress_out`` of the continuous covariates;
- **regress-bbknn**: that, PCA (the covariates study scales to max 10 first), then
  ``bbknn.bbknn`` on the categorical covariates' combination (batch-balanced neighbours);
- **regress-harmony**: that, PCA, then Harmony on every categorical covariate.

Harmony is called through ``harmonypy.run_harmony`` directly: scanpy's
``harmony_integrate`` transposes harmonypy 2.x's output, which is already cells × PCs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprob.data.preprocess import log_normalize

DEFAULT_N_NEIGHBORS = 15
_REP_KEY = "X_rep"
BaselineMethod = Literal["regress", "regress_bbknn", "regress_harmony"]
BASELINE_METHODS: tuple[BaselineMethod, ...] = ("regress", "regress_bbknn", "regress_harmony")


@dataclasses.dataclass(frozen=True)
class Representation:
    """One method's view of the cells: a kNN graph and the space it was built in.

    ``embedding``: ``(n_cells, n_dims)``, the coordinates the neighbours were searched in.
    ``connectivities`` / ``distances``: ``(n_cells, n_cells)`` CSR, scanpy's fuzzy-UMAP
    edge weights (symmetric, zero diagonal) and kNN distances. ``graph_only``: the method
    corrects only the graph (bbknn); its ``embedding`` is then the *uncorrected* PCA, kept
    only to lay out the UMAP, and metrics must not score it as the method's output.
    """

    embedding: np.ndarray
    connectivities: sp.csr_matrix
    distances: sp.csr_matrix
    name: str
    graph_only: bool = False

    @property
    def n_cells(self) -> int:
        return self.connectivities.shape[0]


def _graph_adata(embedding: np.ndarray) -> ad.AnnData:
    """A featureless AnnData carrying ``embedding`` in ``obsm`` for scanpy's graph tools."""
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 2 or embedding.shape[0] < 2:
        raise ValueError(
            f"embedding must be (n_cells, n_dims) with at least 2 cells, got {embedding.shape}."
        )
    if not np.all(np.isfinite(embedding)):
        raise ValueError("embedding holds NaN or infinite values; check the model's output.")
    adata = ad.AnnData(np.zeros((embedding.shape[0], 1), dtype=np.float32))
    adata.obsm[_REP_KEY] = embedding
    return adata


def neighbor_graph(
    embedding: np.ndarray,
    n_neighbors: int = DEFAULT_N_NEIGHBORS,
    seed: int = 0,
    name: str = "",
) -> Representation:
    """The kNN graph (``scanpy.pp.neighbors``, UMAP weights, Euclidean) of an embedding.

    ``embedding``: ``(n_cells, n_dims)``, e.g. an scVI latent or Harmony's corrected PCs.
    """
    adata = _graph_adata(embedding)
    if not 2 <= n_neighbors < adata.n_obs:
        raise ValueError(
            f"n_neighbors must be in [2, n_cells) = [2, {adata.n_obs}), got {n_neighbors}."
        )
    import scanpy as sc

    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=_REP_KEY, random_state=seed)
    return Representation(
        embedding=adata.obsm[_REP_KEY],
        connectivities=sp.csr_matrix(adata.obsp["connectivities"]),
        distances=sp.csr_matrix(adata.obsp["distances"]),
        name=name,
    )


def _check_covariates(adata: ad.AnnData, covariate_keys: Sequence[str]) -> list[str]:
    """Covariate keys that exist, are numeric, finite and vary across cells."""
    missing = [k for k in covariate_keys if k not in adata.obs]
    if missing:
        raise ValueError(
            f"covariates {missing} are not in adata.obs; add them first "
            "(scprob.data.preprocess.add_nuisance_covariates)."
        )
    not_numeric = [k for k in covariate_keys if not pd.api.types.is_numeric_dtype(adata.obs[k])]
    if not_numeric:
        raise ValueError(
            f"covariates {not_numeric} are not numeric; regress_out removes continuous "
            "covariates only (correct categorical ones such as the batch with bbknn/Harmony)."
        )
    values = adata.obs[list(covariate_keys)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("covariates hold NaN or infinite values; fill or drop those cells.")
    # A constant covariate is already covered by the regression's intercept, and it would
    # make the design singular, which sends regress_out to a much slower GLM fallback.
    return [k for k, column in zip(covariate_keys, values.T, strict=True) if np.ptp(column) > 0]


def _baseline_input(
    adata: ad.AnnData,
    covariate_keys: Sequence[str],
    n_pcs: int,
    layer: str | None,
    exclude_genes: Sequence[str],
) -> tuple[sp.csr_matrix | np.ndarray, pd.DataFrame]:
    """The log-normalised counts of the kept genes and the covariates to regress out."""
    if layer is not None and layer not in adata.layers:
        raise ValueError(
            f"layer {layer!r} is not in adata.layers (have {list(adata.layers)}); "
            "pass the layer holding raw counts, or layer=None to use adata.X."
        )
    regressed_keys = _check_covariates(adata, covariate_keys)
    keep = ~adata.var_names.isin(list(exclude_genes))
    counts = (adata.X if layer is None else adata.layers[layer])[:, keep]
    n_cells, n_genes = counts.shape
    if not 1 <= n_pcs < min(n_cells, n_genes):
        raise ValueError(
            f"n_pcs must be in [1, min(n_cells, n_genes)) = [1, {min(n_cells, n_genes)}), "
            f"got {n_pcs}."
        )
    return log_normalize(counts), adata.obs[regressed_keys]


def regress_pca(
    adata: ad.AnnData,
    covariate_keys: Sequence[str],
    n_pcs: int = 50,
    seed: int = 0,
    *,
    layer: str | None = "counts",
    exclude_genes: Sequence[str] = (),
) -> np.ndarray:
    """Raw counts → log-normalise → regress out covariates → scale → PCA.

    Reads counts from ``adata.layers[layer]`` (``None``: ``adata.X``), leaving out
    ``exclude_genes`` (the paper removes the nuisance genes it conditions on from the input).
    Normalisation uses the median total of the kept genes. ``covariate_keys``: numeric
    ``adata.obs`` columns; constant ones are skipped. Scaling clips at 10 standard
    deviations. Returns the PCA, ``(n_cells, n_pcs)`` float32. ``adata`` is not modified.
    """
    log_normalized, covariates = _baseline_input(adata, covariate_keys, n_pcs, layer,
                                                 exclude_genes)
    return regressed_pcs(log_normalized, covariates, n_pcs, seed, scale=True)


def _check_batch(adata: ad.AnnData, batch_key: str) -> pd.DataFrame:
    """The batch as the one categorical covariate of a baseline (at least 2 batches)."""
    if batch_key not in adata.obs:
        raise ValueError(f"batch_key {batch_key!r} is not a column of adata.obs.")
    batches = adata.obs[batch_key].astype(str).astype("category")
    if batches.cat.categories.size < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has a single batch; batch correction needs at least 2."
        )
    return batches.to_frame()


def regress_bbknn(
    adata: ad.AnnData,
    covariate_keys: Sequence[str],
    batch_key: str,
    n_pcs: int = 50,
    seed: int = 0,
    *,
    neighbors_within_batch: int = 3,
    layer: str | None = "counts",
    exclude_genes: Sequence[str] = (),
) -> Representation:
    """regress-bbknn on the batch: :func:`regress_pca`, then :func:`bbknn_graph`.

    bbknn takes ``neighbors_within_batch`` neighbours from each batch (its default, 3),
    searched with annoy (deterministic). The result is ``graph_only``: bbknn corrects the
    neighbour graph, not the PCA.
    """
    batches = _check_batch(adata, batch_key)
    _check_neighbors_within_batch(combined_labels(batches, [batch_key]), neighbors_within_batch)
    log_normalized, covariates = _baseline_input(adata, covariate_keys, n_pcs, layer,
                                                 exclude_genes)
    rep = run_baseline("regress_bbknn", log_normalized, covariates, batches, n_pcs=n_pcs,
                       seed=seed, scale=True, neighbors_within_batch=neighbors_within_batch)
    return dataclasses.replace(rep, name="regress-bbknn")


def regress_harmony(
    adata: ad.AnnData,
    covariate_keys: Sequence[str],
    batch_key: str,
    n_pcs: int = 50,
    seed: int = 0,
    *,
    n_neighbors: int = DEFAULT_N_NEIGHBORS,
    layer: str | None = "counts",
    exclude_genes: Sequence[str] = (),
) -> Representation:
    """regress-harmony on the batch: :func:`regress_pca`, :func:`harmony_correct`, then
    :func:`neighbor_graph` of the corrected PCs."""
    batches = _check_batch(adata, batch_key)
    log_normalized, covariates = _baseline_input(adata, covariate_keys, n_pcs, layer,
                                                 exclude_genes)
    corrected = run_baseline("regress_harmony", log_normalized, covariates, batches,
                             n_pcs=n_pcs, seed=seed, scale=True)
    return neighbor_graph(corrected, n_neighbors=n_neighbors, seed=seed, name="regress-harmony")


def umap_from_graph(rep: Representation, seed: int = 0) -> np.ndarray:
    """2-D UMAP layout of a representation's graph (``scanpy.tl.umap``, seeded).

    The layout optimises ``rep.connectivities`` only; ``rep.embedding`` seeds the spectral
    initialisation where the graph has several connected components. Returns
    ``(n_cells, 2)`` float32.
    """
    import scanpy as sc

    adata = _graph_adata(rep.embedding)
    if rep.connectivities.shape != (adata.n_obs, adata.n_obs):
        raise ValueError(
            f"rep.connectivities is {rep.connectivities.shape} but rep.embedding has "
            f"{adata.n_obs} cells."
        )
    # Copies: umap's layout zeroes weak edges of the graph it is given, in place.
    adata.obsp["connectivities"] = rep.connectivities.copy()
    adata.obsp["distances"] = rep.distances.copy()
    # What scanpy.tl.umap reads: where the graph lives and how it was built.
    adata.uns["neighbors"] = {
        "connectivities_key": "connectivities",
        "distances_key": "distances",
        "params": {"method": "umap", "metric": "euclidean", "use_rep": _REP_KEY},
    }
    sc.tl.umap(adata, random_state=seed)
    return np.asarray(adata.obsm["X_umap"], dtype=np.float32)



# The steps of the baselines --------------------------------------------------------------


def run_baseline(
    method: BaselineMethod,
    log_normalized: np.ndarray | sp.spmatrix,
    continuous: pd.DataFrame,
    categorical: pd.DataFrame,
    *,
    n_pcs: int = 50,
    seed: int = 0,
    scale: bool = False,
    neighbors_within_batch: int = 3,
) -> np.ndarray | Representation:
    """One baseline on log-normalised expression ``(n_cells, n_genes)``.

    ``continuous``: ``(n_cells, n_continuous)`` covariates regressed out;
    ``categorical``: ``(n_cells, n_categorical)`` covariates the batch correction removes
    (bbknn: their combination, one batch per observed combination; Harmony: all at once).
    ``scale``: z-score each gene (clipped at 10) before the PCA, as the covariates study
    does; the runtime study times the paper's steps without it. Returns the residuals
    ``(n_cells, n_genes)`` for ``regress``, the bbknn :class:`Representation` for
    ``regress_bbknn``, the corrected PCs ``(n_cells, n_pcs)`` for ``regress_harmony``.
    """
    if method not in BASELINE_METHODS:
        raise ValueError(f"method must be one of {BASELINE_METHODS}, got {method!r}.")
    if method == "regress":
        return regress_out_continuous(log_normalized, continuous)
    pcs = regressed_pcs(log_normalized, continuous, n_pcs, seed, scale=scale)
    if method == "regress_bbknn":
        labels = combined_labels(categorical, list(categorical.columns))
        return bbknn_graph(pcs, labels, neighbors_within_batch=neighbors_within_batch)
    return harmony_correct(pcs, categorical, seed=seed)


def combined_labels(obs: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """One label per cell naming its combination of the categorical ``keys``
    (``"Sanger-Cells|D3"``): how several categorical covariates enter a method that takes
    one."""
    missing = [k for k in keys if k not in obs]
    if not keys or missing:
        raise ValueError(f"categorical keys {list(keys)} must be non-empty columns of obs; "
                         f"missing: {missing}.")
    labels = obs[keys[0]].astype(str).to_numpy(dtype=object)
    for key in keys[1:]:
        labels = labels + "|" + obs[key].astype(str).to_numpy(dtype=object)
    return labels.astype(str)


def regress_out_continuous(
    log_normalized: np.ndarray | sp.spmatrix, covariates: pd.DataFrame
) -> np.ndarray:
    """``scanpy.pp.regress_out`` of every column of ``covariates`` from ``log_normalized``.

    ``log_normalized``: ``(n_cells, n_genes)`` dense or CSR; scanpy densifies sparse input
    itself, and that copy is part of the function's cost. ``covariates``: ``(n_cells,
    n_covariates)`` numeric columns (regress_out takes one categorical key only, alone, so
    categorical covariates belong to bbknn/Harmony); constant columns are skipped (the
    intercept covers them). Returns the residuals, ``(n_cells, n_genes)`` dense, in the
    input's float dtype. The input is not modified.
    """
    import scanpy as sc

    if covariates.shape[0] != log_normalized.shape[0]:
        raise ValueError(
            f"covariates has {covariates.shape[0]} rows but log_normalized has "
            f"{log_normalized.shape[0]} cells; pass one row per cell."
        )
    obs = covariates.copy()
    obs.index = obs.index.astype(str)
    # scanpy writes the residuals into a dense X in place; a sparse X it replaces.
    matrix = log_normalized if sp.issparse(log_normalized) else np.array(log_normalized)
    work = ad.AnnData(X=matrix, obs=obs)
    kept = _check_covariates(work, list(covariates.columns))
    if kept:
        sc.pp.regress_out(work, keys=kept)
    return np.asarray(work.X.toarray() if sp.issparse(work.X) else work.X)


def regressed_pcs(
    log_normalized: np.ndarray | sp.spmatrix,
    continuous: pd.DataFrame,
    n_pcs: int,
    seed: int = 0,
    *,
    scale: bool = False,
) -> np.ndarray:
    """:func:`regress_out_continuous`, optionally z-scored per gene (clipped at 10), then
    ``scanpy.pp.pca`` (seeded): ``(n_cells, n_pcs)`` float32. The dense residuals, the
    largest array of a baseline, are freed before the batch correction runs."""
    import scanpy as sc

    residuals = regress_out_continuous(log_normalized, continuous)
    if scale:
        residuals = sc.pp.scale(residuals, max_value=10)
    return np.asarray(sc.pp.pca(residuals, n_comps=n_pcs, random_state=seed), dtype=np.float32)


def _check_neighbors_within_batch(labels: np.ndarray, neighbors_within_batch: int) -> None:
    smallest = int(pd.Series(labels).value_counts().min())
    if not 1 <= neighbors_within_batch < smallest:
        raise ValueError(
            f"neighbors_within_batch must be in [1, {smallest}) (the smallest batch has "
            f"{smallest} cells), got {neighbors_within_batch}; use fewer batch keys or "
            "more cells."
        )


def bbknn_graph(
    embedding: np.ndarray,
    batches: Sequence[str] | pd.Series,
    neighbors_within_batch: int = 3,
    name: str = "bbknn",
) -> Representation:
    """Batch-balanced kNN graph (``bbknn.bbknn``, annoy, ``neighbors_within_batch`` per
    batch) of ``embedding`` ``(n_cells, n_dims)``, one batch label per cell in ``batches``.

    bbknn corrects one categorical key; to correct several, pass their
    :func:`combined_labels`. The result is ``graph_only``.
    """
    import bbknn

    work = _graph_adata(embedding)
    labels = np.asarray(batches, dtype=str)
    if labels.shape != (work.n_obs,):
        raise ValueError(
            f"batches has {labels.size} labels but embedding has {work.n_obs} cells."
        )
    _check_neighbors_within_batch(labels, neighbors_within_batch)
    work.obs["batch"] = pd.Categorical(labels)
    bbknn.bbknn(
        work,
        batch_key="batch",
        use_rep=_REP_KEY,
        neighbors_within_batch=neighbors_within_batch,
        computation="annoy",
    )
    return Representation(
        embedding=work.obsm[_REP_KEY],
        connectivities=sp.csr_matrix(work.obsp["connectivities"]),
        distances=sp.csr_matrix(work.obsp["distances"]),
        name=name,
        graph_only=True,
    )


def harmony_correct(embedding: np.ndarray, covariates: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """Harmony (``harmonypy.run_harmony``, default parameters) of ``embedding``
    ``(n_cells, n_pcs)`` on every categorical column of ``covariates`` at once.

    Returns the corrected PCs, ``(n_cells, n_pcs)`` float32.
    """
    import harmonypy

    embedding = np.asarray(embedding)
    if covariates.shape[0] != embedding.shape[0] or covariates.shape[1] == 0:
        raise ValueError(
            f"covariates must have one row per cell ({embedding.shape[0]}) and at least one "
            f"column, got {covariates.shape}."
        )
    meta = covariates.astype(str).reset_index(drop=True)
    harmony = harmonypy.run_harmony(
        embedding.astype(np.float64), meta, list(meta.columns), random_state=seed, verbose=False
    )
    corrected = np.asarray(harmony.Z_corr, dtype=np.float32)
    if corrected.shape != embedding.shape:
        raise RuntimeError(
            f"harmonypy returned Z_corr of shape {corrected.shape}, expected (n_cells, n_pcs) "
            f"= {embedding.shape}; the installed harmonypy changed its output orientation."
        )
    return corrected
