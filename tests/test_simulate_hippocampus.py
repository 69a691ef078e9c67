"""The hippocampus-like reference + spots simulator, and the spacexr readers on the real
toy Visium data."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scprob.data.io import read_spacexr_reference, read_spacexr_spatial
from scprob.data.simulate import simulate_hippocampus
from scprob.data.simulate.hippocampus import CELL_TYPES

SMALL = {"n_cells": 600, "n_spots": 80, "n_genes": 120}


def test_shapes_counts_and_truth() -> None:
    sc, st = simulate_hippocampus(**SMALL, seed=3)
    assert sc.shape == (600, 120) and st.shape == (80, 120)
    assert list(sc.var_names) == list(st.var_names)
    for adata in (sc, st):
        values = adata.X.data
        assert (values == np.round(values)).all() and (values >= 0).all()
    assert set(sc.obs["cell_type"].cat.categories) == set(CELL_TYPES)
    truth = st.obsm["true_proportions"]
    assert list(truth.columns) == list(CELL_TYPES) and list(truth.index) == list(st.obs_names)
    np.testing.assert_allclose(truth.sum(1), 1.0)
    assert st.obs["n_cells"].between(5, 15).all()
    assert st.obsm["spatial"].shape == (80, 2)
    np.testing.assert_allclose(sc.varm["true_frequencies"].sum(0), 1.0)


def test_the_default_reference_has_unequal_type_sizes() -> None:
    sc, _ = simulate_hippocampus(n_cells=3000, n_spots=20, n_genes=100)
    sizes = sc.obs["cell_type"].value_counts()
    assert sizes.max() > 10 * sizes.min() and sizes.min() >= 3


def test_a_seed_gives_the_same_data() -> None:
    a, b = simulate_hippocampus(**SMALL, seed=5), simulate_hippocampus(**SMALL, seed=5)
    for x, y in zip(a, b, strict=True):
        assert (x.X != y.X).nnz == 0
    np.testing.assert_array_equal(a[1].obsm["true_proportions"], b[1].obsm["true_proportions"])
    other = simulate_hippocampus(**SMALL, seed=6)
    assert (other[1].X != a[1].X).nnz > 0


def test_the_spacexr_readers_on_the_real_files(shared_data) -> None:
    folder = shared_data / "visium_hippocampus_spacexr"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    reference = read_spacexr_reference(folder / "Reference" / "Visium_Ref")
    spots = read_spacexr_spatial(folder / "SpatialRNA" / "VisiumVignette")
    assert reference.shape == (510, 307) and spots.shape == (313, 276)
    assert reference.obs["cell_type"].value_counts().eq(30).all()
    assert len(reference.obs["cell_type"].cat.categories) == 17
    assert spots.obsm["spatial"].shape == (313, 2)
    assert len(set(reference.var_names) & set(spots.var_names)) == 124
    assert reference.X.format == "csr" and (reference.X.data == np.round(reference.X.data)).all()
    # nUMI covers the full transcriptome: at least the counts of the genes kept here.
    assert (spots.obs["nUMI"] >= np.asarray(spots.X.sum(1)).ravel()).all()


def test_the_spacexr_readers_name_missing_files_and_barcodes(shared_data, tmp_path) -> None:
    folder = shared_data / "visium_hippocampus_spacexr" / "SpatialRNA" / "VisiumVignette"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    target = tmp_path / "spots"
    target.mkdir()
    (target / "counts.csv").write_bytes((folder / "counts.csv").read_bytes())
    (target / "nUMI.csv").write_bytes((folder / "nUMI.csv").read_bytes())
    with pytest.raises(ValueError, match=re.escape(f"{str(target / 'coords.csv')!r} is "
                                                   "missing")):
        read_spacexr_spatial(target)
    lines = (folder / "coords.csv").read_text().splitlines()
    (target / "coords.csv").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(ValueError, match=re.escape(
            "coords.csv in ") + r".* does not name the barcodes of counts.csv: 2 of its 313"):
        read_spacexr_spatial(target)
