"""The code-complexity study (paper Fig. 5c): radon's counts on files whose numbers are
checked by hand, groups, sdists read from a tar.gz, the pip download against a local
folder (no network), and the rules end to end on config/test.yaml (offline, recorded
peers) and on a config that downloads fixture sdists."""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scprob.bench.complexity import (
    MEASURED,
    OURS,
    RECORDED,
    ChecksumError,
    complexity_claims,
    complexity_table,
    download_sdist,
    measure_files,
    measure_sdist,
    measure_source,
    recorded_group,
    resolve_files,
)
from tests.conftest import REPO, SNAKEMAKE, TEST_CONFIG, run_snakemake, sha256_file

# SLOC 11 (the two-line docstring and the comment are not source lines); blocks: plain
# (CC 1) and branchy (1 + if + elif + for = 4).
MODULE_A = '''"""Module docstring,
on two lines."""

# a comment
import os


def plain(x):
    return x + 1


def branchy(x):
    if x > 0:
        return 1
    elif x < 0:
        return -1
    for i in range(3):
        x += i
    return 0
'''
# SLOC 6; blocks: __init__ (1), add (1 + if + and = 3) and the class, which radon scores
# as the integer mean of its methods' (1 + 3) / 2 = 2, plus 1 for having several: 3.
MODULE_B = '''class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        if k and self.n:
            self.n += k
'''

RADON = SNAKEMAKE.with_name("radon")


def write_package(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "a.py").write_text(MODULE_A)
    (root / "nn").mkdir()
    (root / "nn" / "b.py").write_text(MODULE_B)
    (root / "nn" / "__init__.py").write_text("")
    return root


def tar_gz(path: Path, top: str, files: dict[str, str]) -> Path:
    """A reproducible .tar.gz of ``files`` under the folder ``top`` (as an sdist is)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream, \
            tarfile.open(fileobj=stream, mode="w") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path


# An in-tree build backend: pip prepares the sdist's metadata without installing anything.
BACKEND = '''import os


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = "{dist}-{version}.dist-info"
    os.makedirs(os.path.join(metadata_directory, info))
    with open(os.path.join(metadata_directory, info, "METADATA"), "w") as stream:
        stream.write("Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n")
    return info
'''


def fixture_sdist(folder: Path, name: str, version: str = "0.1") -> Path:
    """A pip-downloadable sdist of a tiny package ``name`` holding pkg/a.py and pkg/b.py."""
    dist = name.replace("-", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return tar_gz(folder / f"{dist}-{version}.tar.gz", f"{dist}-{version}", {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                          'backend-path = ["."]\n',
        "backend.py": BACKEND.format(dist=dist, name=name, version=version),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "pkg/__init__.py": "",
        "pkg/a.py": MODULE_A,
        "pkg/b.py": MODULE_B,
    })


# radon's numbers ------------------------------------------------------------------------


def test_sloc_and_cc_of_one_file_match_the_hand_count() -> None:
    a = measure_source("a.py", MODULE_A)
    assert (a.sloc, a.cc_total, a.n_blocks) == (11, 5, 2)
    b = measure_source("b.py", MODULE_B)
    assert (b.sloc, b.cc_total, b.n_blocks) == (6, 7, 3)


def test_group_sums_sloc_and_pools_blocks_as_radon_cc_a(tmp_path: Path) -> None:
    root = write_package(tmp_path / "pkg")
    group, files = measure_files(root, ["models/a.py", "nn/"], "core")
    assert [f.path for f in files] == ["models/a.py", "nn/__init__.py", "nn/b.py"]
    assert group.sloc == 17 and group.n_blocks == 5
    assert group.average_cc == pytest.approx(12 / 5)  # pooled, not (2.5 + 7/3) / 2
    assert group.source == OURS and group.how == MEASURED
    # The same number as the command line prints.
    cli = subprocess.run([str(RADON), "cc", "-a", "models/a.py", "nn"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    assert "5 blocks" in cli and "Average complexity: A (2.4)" in cli
    raw = subprocess.run([str(RADON), "raw", "-s", "models/a.py", "nn"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"\*\* Total \*\*\n\s+LOC: \d+\n\s+LLOC: \d+\n\s+SLOC: 17\n", raw)


def test_a_group_without_blocks_has_no_average(tmp_path: Path) -> None:
    (tmp_path / "c.py").write_text("X = 1\nY = 2\n")
    group, _ = measure_files(tmp_path, ["c.py"], "constants")
    assert group.sloc == 2 and group.n_blocks == 0 and pd.isna(group.average_cc)


def test_a_missing_configured_file_is_named(tmp_path: Path) -> None:
    root = write_package(tmp_path / "pkg")
    with pytest.raises(FileNotFoundError) as error:
        resolve_files(root, ["models/a.py", "models/stereoscope.py"], "Stereoscope")
    assert str(error.value) == (
        "complexity group 'Stereoscope': configured file 'models/stereoscope.py' does not "
        f"exist under {root}; fix the path in the config (complexity.models or "
        "complexity.core)."
    )


def test_sdist_files_are_read_from_the_tar_gz(tmp_path: Path) -> None:
    sdist = tar_gz(tmp_path / "peer-1.0.tar.gz", "peer-1.0", {
        "setup.py": "from setuptools import setup\nsetup()\n",
        "src/peer/__init__.py": "",
        "src/peer/a.py": MODULE_A,
        "src/peer/sub/b.py": MODULE_B,
        "src/peer/README.md": "not python\n",
    })
    whole, files = measure_sdist(sdist, ["src/peer/"], "whole", "peer 1.0")
    assert [f.path for f in files] == ["src/peer/__init__.py", "src/peer/a.py",
                                       "src/peer/sub/b.py"]
    assert (whole.sloc, whole.n_blocks, whole.source) == (17, 5, "peer 1.0")
    one, _ = measure_sdist(sdist, ["src/peer/sub/b.py"], "b", "peer 1.0")
    assert (one.sloc, one.n_blocks, one.average_cc) == (6, 3, pytest.approx(7 / 3))
    with pytest.raises(FileNotFoundError, match=r"'src/peer/c.py' is not in peer-1.0.tar.gz"):
        measure_sdist(sdist, ["src/peer/c.py"], "c", "peer 1.0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peer-1.0.tar.gz"]  # nothing extracted


# The download ---------------------------------------------------------------------------


def test_download_from_a_local_folder_checks_and_moves_the_sdist(tmp_path: Path) -> None:
    source = fixture_sdist(tmp_path / "index", "fixture-peer")
    target = tmp_path / "resources" / source.name
    written = download_sdist("fixture-peer", "0.1", source.name, sha256_file(source), target,
                             find_links=str(tmp_path / "index"))
    assert written == target and target.read_bytes() == source.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == [source.name]


def test_checksum_mismatch_names_both_and_leaves_no_file(tmp_path: Path) -> None:
    source = fixture_sdist(tmp_path / "index", "fixture-peer")
    target = tmp_path / "resources" / source.name
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as error:
        download_sdist("fixture-peer", "0.1", source.name, wrong, target,
                       find_links=str(tmp_path / "index"))
    message = str(error.value)
    assert f"sha256 {sha256_file(source)} does not match the recorded {wrong}" in message
    assert "record its sha256" in message
    assert list(target.parent.iterdir()) == []  # no sdist, no temporary folder


def test_pip_failure_says_the_offline_config_does_not_need_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    target = tmp_path / "resources" / "fixture_peer-0.1.tar.gz"
    with pytest.raises(RuntimeError, match=r"pip download of fixture-peer==0.1 failed .*"
                                           r"The default offline config"):
        download_sdist("fixture-peer", "0.1", target.name, "0" * 64, target,
                       find_links=str(tmp_path / "empty"))
    assert list(target.parent.iterdir()) == []


# The claims -----------------------------------------------------------------------------


def _study_table(ours_stereoscope: int | None) -> pd.DataFrame:
    groups = [recorded_group("Stereoscope", "scvi-tools 1.4.2", ["x/"],
                             {"sloc": 352, "average_cc": 1.33, "n_blocks": 30}),
              recorded_group("Stereoscope", "stereoscope 0.3", ["stsc/"],
                             {"sloc": 1781, "average_cc": 3.24, "n_blocks": 71}),
              recorded_group("Stereoscope core", "stereoscope 0.3", ["stsc/models.py"],
                             {"sloc": 863, "average_cc": 2.71, "n_blocks": 49})]
    table = complexity_table(groups)
    if ours_stereoscope is not None:
        table.loc[len(table)] = ["Stereoscope", OURS, "models/stereoscope.py",
                                 ours_stereoscope, 2.0, 10, MEASURED]
    return table


def test_claims_check_the_paper_and_skip_ours_without_a_stereoscope() -> None:
    claims = complexity_claims(_study_table(None), "scvi-tools 1.4.2", "stereoscope 0.3", 0.4)
    assert len(claims) == 5
    assert claims["value"].iloc[:3].tolist() == pytest.approx(
        [352 / 1781, 352 / 863, 1.33 / 3.24])
    assert claims["holds"].iloc[:3].tolist() == [True, False, True]
    assert claims.iloc[0]["criterion"] == "SLOC ratio <= 0.4"
    assert claims.iloc[3]["note"] == "not checked: no Stereoscope in complexity.models"
    assert pd.isna(claims.iloc[3]["holds"])
    assert claims.iloc[-1]["holds"] == False  # noqa: E712 (the core ratio, 0.408)


def test_claims_compare_our_stereoscope_with_scvi_tools() -> None:
    claims = complexity_claims(_study_table(300), "scvi-tools 1.4.2", "stereoscope 0.3", 0.45)
    ours = claims.iloc[3]
    assert (ours["ours"], ours["scvi_tools"]) == (300, 352)
    assert ours["value"] == pytest.approx(300 / 352) and ours["holds"]
    assert claims.iloc[-1]["holds"]
    shorter = complexity_claims(_study_table(400), "scvi-tools 1.4.2", "stereoscope 0.3", 0.45)
    assert not shorter.iloc[3]["holds"] and not shorter.iloc[-1]["holds"]


# The configured core --------------------------------------------------------------------


def test_configured_core_is_what_the_models_import() -> None:
    """The default config's core is every scprob module the model files import,
    directly or not, and nothing else (so it is counted once, and completely)."""
    settings = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["complexity"]
    package = REPO / "src" / "scprob"
    models = {p for files in settings["models"].values()
              for p in resolve_files(package, files, "model")}
    core = set(resolve_files(package, settings["core"], "core"))
    seen, todo = set(), list(models)
    while todo:
        path = todo.pop()
        for module in re.findall(r"^\s*from (scprob(?:\.\w+)+) import", path.read_text(),
                                 flags=re.MULTILINE):
            target = package.parent / (module.replace(".", "/") + ".py")
            if target not in seen:
                seen.add(target)
                todo.append(target)
    imported = seen - models
    empty_inits = {p for p in core if p.name == "__init__.py" and not p.read_text().strip()}
    assert core - empty_inits == imported


# The workflow ---------------------------------------------------------------------------

TARGETS = [
    "results/complexity/tables/complexity.csv",
    "results/complexity/tables/complexity_files.csv",
    "results/complexity/tables/claim_check.csv",
    "results/complexity/figures/fig5c_complexity.png",
    "results/complexity/figures/fig5c_complexity.pdf",
]


def _outputs_are_complete(workdir: Path) -> pd.DataFrame:
    png = (workdir / TARGETS[3]).read_bytes()
    pdf = (workdir / TARGETS[4]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    for name in ("measure_complexity", "figure_complexity"):
        assert (workdir / f"logs/complexity/{name}.log").is_file()
    assert (workdir / "results/complexity/benchmarks/measure_complexity.tsv").is_file()
    return pd.read_csv(workdir / TARGETS[0])


@pytest.mark.workflow
def test_offline_run_measures_ours_and_records_the_peers(tmp_path: Path) -> None:
    run = run_snakemake(tmp_path, *TARGETS)
    assert run.returncode == 0, run.stdout[-5000:]
    table = _outputs_are_complete(tmp_path)
    assert table["group"].tolist() == ["scVI", "totalVI", "Stereoscope", "core",
                                       "Stereoscope", "Stereoscope", "Stereoscope core"]
    assert table["source"].tolist() == [OURS] * 4 + ["scvi-tools 1.4.2"] + \
        ["stereoscope 0.3"] * 2
    assert table["how"].tolist() == [MEASURED] * 4 + [RECORDED] * 3
    assert table["sloc"].iloc[4:].tolist() == [352, 1781, 863]
    assert (table["sloc"].iloc[:4] > 0).all() and (table["average_cc"].iloc[:4] >= 1).all()
    per_file = pd.read_csv(tmp_path / TARGETS[1])
    assert set(per_file["source"]) == {OURS}
    assert per_file.groupby("group", sort=False)["sloc"].sum().tolist() == \
        table["sloc"].iloc[:4].tolist()
    claims = pd.read_csv(tmp_path / TARGETS[2])
    ours = claims.iloc[3]  # our Stereoscope against scvi-tools': measured, and shorter
    assert ours["ours"] == table["sloc"].iloc[2] < ours["scvi_tools"] == 352
    assert ours["holds"] and claims["holds"].iloc[-1]
    assert not (tmp_path / "resources").exists()  # offline: nothing downloaded
    again = run_snakemake(tmp_path, *TARGETS, "-n")
    assert "Nothing to be done" in again.stdout


@pytest.mark.workflow
def test_peer_run_downloads_and_measures_the_sdists(tmp_path: Path) -> None:
    index = tmp_path / "index"
    config = yaml.safe_load(TEST_CONFIG.read_text())
    settings = config["complexity"]
    settings.update(download=True, find_links=str(index))
    for key, name in (("scvi_tools", "fixture-reimpl"), ("stereoscope", "fixture-orig")):
        sdist = fixture_sdist(index, name)
        peer = settings["peers"][key]
        peer.update(package=name, version="0.1", sdist=sdist.name, sha256=sha256_file(sdist))
        for group in peer["groups"].values():
            group["files"] = ["pkg/a.py"] if group is peer["groups"].get(
                "Stereoscope core") else ["pkg/"]
    configfile = tmp_path / "peers.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "run"
    run = run_snakemake(workdir, *TARGETS, configfiles=[configfile])
    assert run.returncode == 0, run.stdout[-5000:]
    table = _outputs_are_complete(workdir)
    assert (table["how"] == MEASURED).all()
    peers = table[table["source"] != OURS]
    assert peers["source"].tolist() == ["fixture-reimpl 0.1", "fixture-orig 0.1",
                                        "fixture-orig 0.1"]
    assert peers["sloc"].tolist() == [17, 17, 11]
    assert peers["n_blocks"].tolist() == [5, 5, 2]
    for name in ("fixture_reimpl-0.1.tar.gz", "fixture_orig-0.1.tar.gz"):
        assert (workdir / "resources/complexity" / name).is_file()
        assert (workdir / f"logs/complexity/download_{name}.log").is_file()


@pytest.mark.workflow
def test_a_missing_model_file_stops_the_dry_run(tmp_path: Path) -> None:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["complexity"]["models"]["Stereoscope"] = ["models/stereoscope_missing.py"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    run = run_snakemake(tmp_path, *TARGETS, "-n", configfiles=[bad])
    assert run.returncode != 0
    assert ("complexity group 'Stereoscope': configured file "
            "'models/stereoscope_missing.py' does not exist") in run.stdout
