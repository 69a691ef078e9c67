"""Random helpers shared by the simulators."""

from __future__ import annotations

import numpy as np


def pick_subset(rng: np.random.Generator, candidates: np.ndarray, fraction: float) -> np.ndarray:
    """A sorted random subset of ``candidates`` ``(n,)``, of size ``max(2, round(fraction *
    n))`` (at most ``n``), drawn without replacement."""
    size = min(len(candidates), max(2, round(fraction * len(candidates))))
    return np.sort(rng.choice(candidates, size=size, replace=False))
