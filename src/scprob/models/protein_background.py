"""totalVI's protein background prior, initialised from the data.

In each batch a two-component Gaussian mixture is fitted to every protein's
``log(1 + y)``; the component with the smaller mean, the background peak, gives the
initial mean and standard deviation of ``log β`` (the counts an antibody yields on a cell
without its epitope).
"""

from __future__ import annotations

import numpy as np

# Floor of the background prior's standard deviation (log scale): a batch whose protein
# counts barely vary would otherwise pin the background to a point.
MIN_BACKGROUND_SD = 0.1


def _two_gaussian_mixture(
    values: np.ndarray, n_iterations: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a two-component Gaussian mixture on every column of ``values``
    ``(n_cells, n_columns)`` at once. Returns means, standard deviations and weights, each
    ``(2, n_columns)``; component 0 starts at the lower quartile, component 1 at the upper.
    """
    n_cells = values.shape[0]
    means = np.quantile(values, [0.25, 0.75], axis=0)
    means[1] = np.maximum(means[1], means[0] + 0.1)  # two distinct starting points
    sds = np.full_like(means, max(float(values.std()), MIN_BACKGROUND_SD))
    weights = np.full_like(means, 0.5)
    for _ in range(n_iterations):
        # E step: responsibilities (2, n_cells, n_columns).
        log_density = (np.log(weights)[:, None] - np.log(sds)[:, None]
                       - 0.5 * ((values[None] - means[:, None]) / sds[:, None]) ** 2)
        log_density -= log_density.max(axis=0, keepdims=True)
        responsibility = np.exp(log_density)
        responsibility /= responsibility.sum(axis=0, keepdims=True)
        # M step.
        mass = responsibility.sum(axis=1) + 1e-10
        weights = np.clip(mass / n_cells, 1e-6, 1.0)
        means = (responsibility * values[None]).sum(axis=1) / mass
        variance = (responsibility * (values[None] - means[:, None]) ** 2).sum(axis=1) / mass
        sds = np.sqrt(np.maximum(variance, 1e-6))
    return means, sds, weights


def background_prior_from_data(
    proteins: np.ndarray, batch: np.ndarray, observed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Initial background prior: mean and standard deviation of ``log β``, each
    ``(n_batch, n_proteins)``, from counts ``proteins`` ``(n_cells, n_proteins)``, batch
    codes ``batch`` ``(n_cells,)`` and the observation mask ``observed``
    ``(n_batch, n_proteins)``.

    In each batch, the lower component of a two-component mixture on ``log(1 + y)``. An
    unmeasured entry (or a batch without cells here) gets the protein's average over the
    batches that measured it; a protein measured nowhere gets N(0, 1).
    """
    n_batch, n_proteins = observed.shape
    mean = np.zeros((n_batch, n_proteins))
    sd = np.ones((n_batch, n_proteins))
    log_counts = np.log1p(np.asarray(proteins, dtype=np.float64))
    for b in range(n_batch):
        cells = batch == b
        if not cells.any():
            continue
        means, sds, _ = _two_gaussian_mixture(log_counts[cells])
        lower = np.argmin(means, axis=0)
        columns = np.arange(n_proteins)
        mean[b], sd[b] = means[lower, columns], sds[lower, columns]
    fitted = observed & np.isin(np.arange(n_batch), batch)[:, None]
    n_fitted = fitted.sum(axis=0)
    with np.errstate(invalid="ignore"):
        fallback_mean = np.where(n_fitted > 0, (mean * fitted).sum(0) / n_fitted, 0.0)
        fallback_sd = np.where(n_fitted > 0, (sd * fitted).sum(0) / n_fitted, 1.0)
    mean = np.where(fitted, mean, fallback_mean)
    sd = np.where(fitted, sd, fallback_sd)
    return mean, np.maximum(sd, MIN_BACKGROUND_SD)
