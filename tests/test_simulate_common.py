"""Random helpers shared by the simulators."""

from __future__ import annotations

import numpy as np
import pytest

from scprob.data.simulate.common import pick_subset


@pytest.mark.parametrize(("n", "fraction", "size"),
                         [(200, 0.1, 20), (200, 0.001, 2), (3, 0.9, 3), (1, 0.5, 1)])
def test_pick_subset_draws_a_sorted_subset_of_the_documented_size(
    n: int, fraction: float, size: int
) -> None:
    candidates = np.arange(1000, 1000 + n)
    picked = pick_subset(np.random.default_rng(0), candidates, fraction)
    assert picked.size == size
    assert np.all(np.diff(picked) > 0)  # sorted, no repeats
    assert np.isin(picked, candidates).all()


def test_pick_subset_depends_on_the_generator_state() -> None:
    candidates = np.arange(500)
    first = pick_subset(np.random.default_rng(1), candidates, 0.1)
    again = pick_subset(np.random.default_rng(1), candidates, 0.1)
    other = pick_subset(np.random.default_rng(2), candidates, 0.1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
