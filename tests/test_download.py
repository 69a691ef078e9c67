"""Downloads (src/scprob/data/download.py and rule download_source) against a loopback
mirror: the files of ../shared/data served over HTTP on 127.0.0.1 under their URLs' paths,
plus handlers that misbehave on purpose (a body cut off halfway, a server that stops
answering). Every failure must raise the exact message and leave no file behind.
Skipped when ../shared/data is absent."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from scprob.data.download import (
    FIX_CHECKSUM,
    FIX_SERVER,
    FIX_SIZE,
    FIX_TIMEOUT,
    FIX_TRUNCATED,
    DownloadError,
    Source,
    fetch,
    mirror_url,
    read_sources,
    sources_from_config,
)
from tests.conftest import REPO, SHARED_DATA, SNAKEMAKE, run_snakemake, sha256_file

SOURCES_TSV = SHARED_DATA / "sources.tsv"  # REPO.parent / "shared" / "data" / "sources.tsv"

# URL paths the mirror serves wrongly on purpose.
TRUNCATED = "/misbehave/truncated.bin"  # full Content-Length, half the body, then closes
STALLED = "/misbehave/stalled.bin"  # answers nothing for longer than the timeout
STALLED_BODY = "/misbehave/stalled_body.bin"  # headers and a first chunk, then nothing
PAYLOAD = bytes(range(256)) * 64  # 16 KiB
STALL_S = 5.0  # far beyond the tests' 1 s timeout; the fixture wakes the handlers at exit


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (temporary ones included), relative, sorted."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


class Mirror:
    """A loopback HTTP server over ``root``: its base URL, and the paths it was asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.wake = threading.Event()
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                if self.path == TRUNCATED:
                    self._headers(len(PAYLOAD))
                    self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif self.path == STALLED:
                    mirror.wake.wait(STALL_S)
                elif self.path == STALLED_BODY:
                    self._headers(len(PAYLOAD))
                    self.wfile.write(PAYLOAD[:1024])
                    self.wfile.flush()
                    mirror.wake.wait(STALL_S)
                else:
                    super().do_GET()

            def do_HEAD(self) -> None:
                mirror.requests.append(self.path)
                super().do_HEAD()

            def _headers(self, length: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True  # a stalled handler never holds up the exit
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wake.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def sources() -> list[Source]:
    if not SOURCES_TSV.is_file():
        pytest.skip(f"the shared data folder ({SHARED_DATA}) is absent: nothing to serve.")
    return read_sources(SOURCES_TSV)


@pytest.fixture(scope="module")
def served(sources: list[Source], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Mirror]:
    """The shared files laid out (symlinked) under their URLs' paths and served."""
    root = tmp_path_factory.mktemp("mirror")
    for source in sources:
        link = root / urlsplit(source.url).path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(SHARED_DATA / source.path)
    with Mirror(root) as mirror:
        yield mirror


@pytest.fixture
def mirror(served: Mirror) -> Mirror:
    served.requests.clear()
    return served


def origin(path: str) -> str:
    """A URL on a host that is never contacted: every test goes through the mirror."""
    return f"https://example.invalid{path}"


def expected_failure(url: str, target: Path, source: Source, came: str, fix: str) -> str:
    return (f"download of {url} to {target} failed: {came}; expected {source.size} bytes "
            f"with sha256 {source.sha256}. {fix}")


# mirror_url and the sources table --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "mirror", "expected"),
    [
        ("http://a.org/x/y.csv", None, "http://a.org/x/y.csv"),
        ("http://a.org/x/y.csv", "http://127.0.0.1:8000", "http://127.0.0.1:8000/x/y.csv"),
        ("https://a.org:8443/x/y.csv", "http://127.0.0.1:8000/",
         "http://127.0.0.1:8000/x/y.csv"),
        ("https://a.org/x/y.csv", "http://127.0.0.1:8000/data",
         "http://127.0.0.1:8000/data/x/y.csv"),
        ("https://a.org/x/y.csv?raw=1", "https://m.example/pre/fix/",
         "https://m.example/pre/fix/x/y.csv?raw=1"),
    ],
)
def test_mirror_url(url: str, mirror: str | None, expected: str) -> None:
    assert mirror_url(url, mirror) == expected


def test_mirror_url_rejects_a_mirror_that_is_not_a_url() -> None:
    with pytest.raises(ValueError, match=r"^mirror '127.0.0.1:8000' is not an http\(s\) base"):
        mirror_url("https://a.org/x", "127.0.0.1:8000")


def test_source_defaults_to_the_url_path_and_refuses_escaping_paths() -> None:
    source = Source("https://a.org/x/y%20z.csv", "A" * 64, 3)
    assert (source.path, source.sha256) == ("x/y z.csv", "a" * 64)
    with pytest.raises(ValueError, match="must be relative"):
        Source("https://a.org/x", "a" * 64, 3, path="../x")


def test_read_sources_reads_the_shared_table(sources: list[Source]) -> None:
    assert len(sources) == 27
    first = sources[0]
    assert first.path == "pbmc_cite_seq_10x/pbmc_10k_protein_v3.h5ad"
    assert first.size == 2064068
    assert first.url.endswith("/tests/test_data/pbmc_10k_protein_v3.h5ad")


def test_config_sources_then_the_table_and_no_path_twice(sources: list[Source]) -> None:
    extra = {"url": "https://a.org/x/y.csv", "sha256": "a" * 64, "size": 3}
    settings = {"sources": [extra], "sources_tsv": str(SOURCES_TSV)}
    assert sources_from_config(settings) == [Source(**extra), *sources]
    twice = {**settings, "sources": [{**extra, "path": sources[0].path}]}
    with pytest.raises(ValueError, match=f"^two sources land on {sources[0].path}: "):
        sources_from_config(twice)


# fetch -----------------------------------------------------------------------------------


def test_every_source_fetched_through_the_mirror_then_a_rerun_requests_nothing(
        sources: list[Source], mirror: Mirror, tmp_path: Path) -> None:
    for source in sources:
        target = fetch(source, tmp_path, mirror=mirror.url, timeout=10)
        assert target == tmp_path / source.path
        assert sha256_file(target) == source.sha256
    assert files_under(tmp_path) == sorted(Path(s.path) for s in sources)
    assert len(mirror.requests) == len(sources)

    mirror.requests.clear()
    for source in sources:
        assert fetch(source, tmp_path, mirror=mirror.url, timeout=10) == tmp_path / source.path
    assert mirror.requests == []


def test_unpublished_checksum_is_recorded_at_the_first_fetch_and_checked_after(
        sources: list[Source], mirror: Mirror, tmp_path: Path) -> None:
    """A source without a published sha256 (or size): the first fetch records both beside
    the file; a later fetch (the file gone) must match the record, not just any file."""
    real = sources[-1]
    unpublished = Source(real.url, None, None, real.path)
    target = fetch(unpublished, tmp_path, mirror=mirror.url, timeout=10)
    assert sha256_file(target) == real.sha256
    record = tmp_path / f"{real.path}.sha256"
    assert record.read_text() == f"{real.sha256}  {real.size}  {real.url}\n"
    assert fetch(unpublished, tmp_path, mirror=mirror.url, timeout=10) == target
    assert len(mirror.requests) == 1  # the second call found the recorded file in place

    # The file is lost and the server now sends another one under the same URL.
    target.unlink()
    other = sources[-2]
    moved = Source(other.url, None, None, real.path)
    with pytest.raises(DownloadError) as caught:
        fetch(moved, tmp_path, mirror=mirror.url, timeout=10)
    recorded = Source(other.url, real.sha256, real.size, real.path)
    assert str(caught.value) == expected_failure(
        mirror_url(other.url, mirror.url), target, recorded, f"received {other.size} bytes",
        FIX_SIZE)
    assert not target.exists() and record.is_file()


def test_unpublished_checksum_with_a_wrong_size_records_nothing(
        sources: list[Source], mirror: Mirror, tmp_path: Path) -> None:
    real = sources[-1]
    declared = Source(real.url, None, real.size + 1, real.path)
    with pytest.raises(DownloadError) as caught:
        fetch(declared, tmp_path, mirror=mirror.url, timeout=10)
    assert str(caught.value) == (
        f"download of {mirror_url(real.url, mirror.url)} to {tmp_path / real.path} failed: "
        f"received {real.size} bytes; expected {real.size + 1} bytes (no published sha256). "
        f"{FIX_SIZE}")
    assert files_under(tmp_path) == []


def test_sources_table_rows_without_checksum(tmp_path: Path) -> None:
    table = tmp_path / "sources.tsv"
    table.write_text("path\turl\tsha256\tbytes\n"
                     "a/b.h5ad\thttps://figshare.com/ndownloader/files/1\t\t\n")
    assert read_sources(table) == [
        Source("https://figshare.com/ndownloader/files/1", None, None, "a/b.h5ad")]


def test_checksum_mismatch(sources: list[Source], mirror: Mirror, tmp_path: Path) -> None:
    real = sources[-1]
    wrong = Source(real.url, "0" * 64, real.size, path=real.path)
    url = mirror_url(real.url, mirror.url)
    with pytest.raises(DownloadError) as caught:
        fetch(wrong, tmp_path, mirror=mirror.url, timeout=10)
    assert str(caught.value) == expected_failure(
        url, tmp_path / real.path, wrong, f"received {real.size} bytes with sha256 {real.sha256}",
        FIX_CHECKSUM)
    assert files_under(tmp_path) == []


def test_wrong_size(sources: list[Source], mirror: Mirror, tmp_path: Path) -> None:
    real = sources[-1]
    wrong = Source(real.url, real.sha256, real.size + 1, path=real.path)
    with pytest.raises(DownloadError) as caught:
        fetch(wrong, tmp_path, mirror=mirror.url, timeout=10)
    assert str(caught.value) == expected_failure(
        mirror_url(real.url, mirror.url), tmp_path / real.path, wrong,
        f"received {real.size} bytes", FIX_SIZE)
    assert files_under(tmp_path) == []


def test_body_cut_off_halfway(mirror: Mirror, tmp_path: Path) -> None:
    source = Source(origin(TRUNCATED), sha256(PAYLOAD), len(PAYLOAD))
    with pytest.raises(DownloadError) as caught:
        fetch(source, tmp_path, mirror=mirror.url, timeout=5)
    assert str(caught.value) == expected_failure(
        mirror.url + TRUNCATED, tmp_path / source.path, source,
        f"the connection broke after {len(PAYLOAD) // 2} bytes", FIX_TRUNCATED)
    assert files_under(tmp_path) == []


def test_not_found(mirror: Mirror, tmp_path: Path) -> None:
    source = Source(origin("/no/such/file.csv"), "a" * 64, 10)
    with pytest.raises(DownloadError) as caught:
        fetch(source, tmp_path, mirror=mirror.url + "/data", timeout=5)
    assert str(caught.value) == expected_failure(
        mirror.url + "/data/no/such/file.csv", tmp_path / "no/such/file.csv", source,
        "the server answered HTTP 404 File not found", FIX_SERVER)
    assert mirror.requests == ["/data/no/such/file.csv"]
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("path", [STALLED, STALLED_BODY], ids=["no_answer", "body_stops"])
def test_server_that_stops_answering(path: str, mirror: Mirror, tmp_path: Path) -> None:
    source = Source(origin(path), sha256(PAYLOAD), len(PAYLOAD))
    start = time.perf_counter()
    with pytest.raises(DownloadError) as caught:
        fetch(source, tmp_path, mirror=mirror.url, timeout=1.0)
    assert time.perf_counter() - start < 4  # bounded by the timeout, not by the server
    assert str(caught.value) == expected_failure(
        mirror.url + path, tmp_path / source.path, source, "no answer within 1 s", FIX_TIMEOUT)
    assert files_under(tmp_path) == []


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = Source(origin("/x/y.csv"), "a" * 64, 10)
    with pytest.raises(DownloadError) as caught:
        fetch(source, tmp_path, mirror=f"http://127.0.0.1:{port}", timeout=5)
    assert str(caught.value) == expected_failure(
        f"http://127.0.0.1:{port}/x/y.csv", tmp_path / "x/y.csv", source,
        "no connection (Connection refused)", FIX_SERVER)
    assert files_under(tmp_path) == []


def test_wrong_existing_file_is_replaced(sources: list[Source], mirror: Mirror,
                                         tmp_path: Path) -> None:
    source = sources[-1]
    target = tmp_path / source.path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the data")
    assert fetch(source, tmp_path, mirror=mirror.url, timeout=10) == target
    assert sha256_file(target) == source.sha256
    assert len(mirror.requests) == 1
    assert files_under(tmp_path) == [Path(source.path)]


def test_wrong_existing_file_is_removed_when_the_download_fails(mirror: Mirror,
                                                                tmp_path: Path) -> None:
    source = Source(origin("/no/such/file.csv"), "a" * 64, 10)
    target = tmp_path / source.path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"0123456789")  # the right size, the wrong content
    with pytest.raises(DownloadError) as caught:
        fetch(source, tmp_path, mirror=mirror.url, timeout=5)
    assert str(caught.value) == expected_failure(
        mirror.url + "/no/such/file.csv", target, source,
        "the server answered HTTP 404 File not found", FIX_SERVER
    ) + (" The file that was at the target (received 10 bytes with sha256 "
         f"{sha256(b'0123456789')}) did not match and was removed.")
    assert files_under(tmp_path) == []


# The rule through Snakemake ----------------------------------------------------------------


def run_rule(workdir: Path, config: dict, targets: list[str]) -> subprocess.CompletedProcess:
    """Snakemake on a two-line Snakefile that includes the rule file, in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakefile = workdir / "Snakefile"
    snakefile.write_text(f'configfile: "config.yaml"\n\n\n'
                         f'include: "{REPO / "workflow" / "rules" / "download.smk"}"\n')
    # This checkout's scprob, also where another one is installed in the environment.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run(
        [str(SNAKEMAKE), *targets, "--snakefile", str(snakefile), "--directory",
         str(workdir), "--cores", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, env=env)


@pytest.mark.workflow
def test_rule_downloads_declared_sources_and_stops_on_a_bad_checksum(
        sources: list[Source], mirror: Mirror, tmp_path: Path) -> None:
    if not SNAKEMAKE.exists():
        pytest.skip(f"no snakemake at {SNAKEMAKE}")
    chosen = [s for s in sources if s.size < 1000][:2]
    settings = {"sources": [s.as_dict() for s in chosen], "sources_tsv": None,
                "mirror": mirror.url, "timeout_s": 10}
    targets = [f"resources/{s.path}" for s in chosen]
    run = run_rule(tmp_path / "good", {"download": settings}, targets)
    assert run.returncode == 0, run.stdout
    for source in chosen:
        assert sha256_file(tmp_path / "good" / "resources" / source.path) == source.sha256
        assert (tmp_path / "good" / "logs" / "download" / f"{source.path}.log").is_file()
    assert len(mirror.requests) == 2

    bad = {**chosen[0].as_dict(), "sha256": "0" * 64}
    settings = {**settings, "sources": [bad]}
    workdir = tmp_path / "bad"
    run = run_rule(workdir, {"download": settings}, [f"resources/{bad['path']}"])
    assert run.returncode != 0
    log = (workdir / "logs" / "download" / f"{bad['path']}.log").read_text()
    message = expected_failure(
        mirror_url(bad["url"], mirror.url), Path("resources") / bad["path"], Source(**bad),
        f"received {chosen[0].size} bytes with sha256 {chosen[0].sha256}", FIX_CHECKSUM)
    assert f"scprob.data.download.DownloadError: {message}" in log
    assert files_under(workdir / "resources") == []


@pytest.mark.workflow
def test_real_panels_read_their_files_through_the_download_rule(
        mirror: Mirror, tmp_path: Path) -> None:
    """With the shared table declared and the real folders under resources/, the CellBench
    and spacexr readers take their inputs from rule download_source, through the mirror."""
    if not SNAKEMAKE.exists():
        pytest.skip(f"no snakemake at {SNAKEMAKE}")
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["download"] = {"sources": [], "sources_tsv": str(SOURCES_TSV),
                          "mirror": mirror.url, "timeout_s": 10}
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["cellassign"]["real"] = {**default["cellassign"]["real"], "technologies": ["dropseq"],
                                    "folder": "resources/cellbench_lung_cell_lines"}
    config["deconvolution"]["real"] = {**default["deconvolution"]["real"],
                                       "folder": "resources/visium_hippocampus_spacexr"}
    configfile = tmp_path / "real.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "run"
    workdir.mkdir()
    targets = ["results/cellassign/data/cellbench_dropseq.h5ad",
               "results/deconvolution/data/real/spots.h5ad"]
    run = run_snakemake(workdir, *targets, configfiles=[configfile])
    assert run.returncode == 0, run.stdout
    fetched = sorted(str(path) for path in files_under(workdir / "resources"))
    assert fetched == sorted([
        "cellbench_lung_cell_lines/GENCODEv44_Gene_id2name.csv",
        "cellbench_lung_cell_lines/marker_lists/tian_73_73_markers.yaml",
        "cellbench_lung_cell_lines/sc_dropseq.count.csv.gz",
        "cellbench_lung_cell_lines/sc_dropseq.metadata.csv.gz",
        *(f"visium_hippocampus_spacexr/{name}" for name in (
            "Reference/Visium_Ref/counts.csv", "Reference/Visium_Ref/cell_types.csv",
            "Reference/Visium_Ref/nUMI.csv", "SpatialRNA/VisiumVignette/counts.csv",
            "SpatialRNA/VisiumVignette/coords.csv", "SpatialRNA/VisiumVignette/nUMI.csv"))])
    assert len(mirror.requests) == len(fetched)  # each file once, nothing else
    cells = ad.read_h5ad(workdir / targets[0])
    assert cells.n_obs == 210  # the Drop-seq singlets
    assert set(cells.obs["cell_line"]) == {"H1975", "H2228", "HCC827"}


def test_repository_sources_table_is_the_shared_one(sources: list[Source]) -> None:
    """config/real.yaml's table declares exactly the shared files, so the mirror below
    serves what a run from the original URLs would fetch."""
    assert read_sources(REPO / "config" / "real_sources.tsv") == sources


REAL_OUTPUTS = [
    *(f"results/scarches/tables/{name}.csv" for name in (
        "label_transfer_scores", "confusion_scarches", "confusion_de_novo", "agreement",
        "rare_subsets", "runtime", "summary", "claim_check", "reference_clusters",
        "reference_protein_foreground", "reference_training_history",
        "query_training_history", "de_novo_training_history")),
    *(f"results/scarches/figures/{stem}.{ext}" for stem in (
        "fig3b_umap_labels", "fig3c_umap_dataset", "fig3d_confusion_scarches",
        "fig3f_g_rare_subsets", "fig3h_agreement", "runtime", "reference_totalvi")
      for ext in ("png", "pdf")),
    *(f"results/cellassign/tables/{name}.csv"
      for name in ("scores", "confusion", "agreement", "claim_check")),
    "results/cellassign/figures/cellbench_confusion.png",
    "results/cellassign/figures/cellbench_confusion.pdf",
    "results/deconvolution/figures/fig5g_real_proportion_maps.png",
    "results/deconvolution/figures/fig5g_real_proportion_maps.pdf",
    "results/deconvolution/proportions/real/scprob_100_1000.csv",
]


@pytest.mark.workflow
def test_real_config_runs_end_to_end_through_the_mirror(mirror: Mirror,
                                                        tmp_path: Path) -> None:
    """`snakemake --configfile config/real.yaml` with the mirror setting: every real
    figure and table, results that recover each truth, each file fetched once, and a
    second run with nothing to do."""
    if not SNAKEMAKE.exists():
        pytest.skip(f"no snakemake at {SNAKEMAKE}")
    config = yaml.safe_load((REPO / "config" / "real.yaml").read_text())
    config["download"]["mirror"] = mirror.url
    configfile = tmp_path / "real.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "run"
    workdir.mkdir()
    run = run_snakemake(workdir, configfiles=[configfile])
    assert run.returncode == 0, run.stdout[-5000:]
    missing = [path for path in REAL_OUTPUTS if not (workdir / path).is_file()]
    assert missing == []
    assert len(mirror.requests) == len(set(mirror.requests)) == 15
    results = workdir / "results"

    # scArches: both labellings recover the ADT-gated types of the held-out query donor.
    scores = pd.read_csv(results / "scarches/tables/label_transfer_scores.csv")
    against_truth = scores[scores["compared_with"] == "truth"].set_index("method")
    assert against_truth["accuracy"].min() >= 0.9
    assert set(against_truth["n_cells"]) == {187}
    claims = pd.read_csv(results / "scarches/tables/claim_check.csv").set_index("claim")
    assert claims.loc["mapping the query leaves the reference latents unchanged", "holds"]
    # The reference model alone: its latent space and protein background follow the types.
    clusters = pd.read_csv(results / "scarches/tables/reference_clusters.csv").iloc[0]
    assert clusters["n_types"] == 5 and clusters["nmi"] >= 0.5
    foreground = pd.read_csv(results / "scarches/tables/reference_protein_foreground.csv",
                             index_col="cell_type")
    for marker, cell_type in (("CD19_TotalSeqB", "B"), ("CD14_TotalSeqB", "Monocyte"),
                              ("CD8a_TotalSeqB", "CD8 T")):
        assert foreground.loc[cell_type, marker] >= 0.9
        assert foreground.drop(index=cell_type)[marker].max() <= 0.1

    # CellAssign: the genotype truth of both technologies, and every claim.
    cellassign = pd.read_csv(results / "cellassign/tables/scores.csv")
    ours = cellassign[cellassign["method"] == "scprob"].set_index("dataset")
    assert ours.loc[["cellbench_celseq2", "cellbench_dropseq"], "accuracy"].min() >= 0.95
    assert pd.read_csv(results / "cellassign/tables/claim_check.csv")["holds"].all()

    # Stereoscope: a proportion per spot and type of the real section, each row summing to 1.
    proportions = pd.read_csv(results / "deconvolution/proportions/real/scprob_100_1000.csv",
                              index_col=0)
    assert proportions.shape[0] == 313
    assert np.allclose(proportions.sum(axis=1), 1.0, atol=1e-4)

    mirror.requests.clear()
    again = run_snakemake(workdir, "-n", configfiles=[configfile])
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout
    assert mirror.requests == []
