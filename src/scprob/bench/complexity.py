"""Code complexity of our models against scvi-tools' and the original Stereoscope (paper
Section 2.5 and Fig. 5c: scvi-tools' Stereoscope needs about 60 % fewer lines).

Measured with radon's Python API, the way the paper did (Methods: "We used the Radon
package for the calculations of average cyclomatic complexity and source lines of code"):

- **SLOC**: ``radon.raw.analyze(source).sloc`` summed over a group's files, the ``SLOC``
  of ``radon raw -s`` (lines of code that are not blank, not comments and not multi-line
  strings, i.e. docstrings).
- **Average CC**: the blocks ``radon cc`` lists (``radon.complexity.cc_visit``: every
  function, every method and every class, where a class scores the mean of its methods
  plus one as radon defines it; closures and nested classes are not blocks of their own,
  as without ``--show-closures``), pooled over the group's files: the sum of their scores
  over their number, which is what ``radon cc -a`` prints for the same files (not a mean
  of per-file means).

A group is a named set of files: each of our models, the shared core every model runs on
(counted once, apart), and each peer's files read straight from its source distribution
(a ``.tar.gz`` read with :mod:`tarfile`, never extracted). A configured path ending in
``/`` stands for every ``.py`` file below it.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from radon.complexity import cc_visit
from radon.raw import analyze

from scprob.bench.claims import Claim, Criterion, claims_table

# The table's "source" of our own groups, and its two ways of getting a number.
OURS = "ours"
MEASURED = "measured"
RECORDED = "recorded"

# The config's peers (keys of complexity.peers) and groups the claims compare.
REIMPLEMENTATION_PEER = "scvi_tools"
ORIGINAL_PEER = "stereoscope"
STEREOSCOPE = "Stereoscope"
ORIGINAL_CORE = "Stereoscope core"

TABLE_COLUMNS = ["group", "source", "files", "sloc", "average_cc", "n_blocks", "how"]


@dataclass(frozen=True)
class FileMetrics:
    """radon's numbers of one file: its SLOC, and its blocks' summed score and count."""

    path: str
    sloc: int
    cc_total: int
    n_blocks: int


@dataclass(frozen=True)
class GroupMetrics:
    """A group's SLOC (summed) and average CC (pooled over its blocks, as ``radon cc -a``)."""

    group: str
    source: str
    files: tuple[str, ...]
    sloc: int
    average_cc: float
    n_blocks: int
    how: str = MEASURED

    def row(self) -> dict[str, object]:
        """The group's row of the complexity table."""
        return {"group": self.group, "source": self.source, "files": "; ".join(self.files),
                "sloc": self.sloc, "average_cc": self.average_cc,
                "n_blocks": self.n_blocks, "how": self.how}


def measure_source(path: str, source: str) -> FileMetrics:
    """SLOC and cyclomatic complexity of one file's ``source`` (``path`` only names it)."""
    blocks = cc_visit(source)
    return FileMetrics(path=path, sloc=analyze(source).sloc,
                       cc_total=sum(block.complexity for block in blocks),
                       n_blocks=len(blocks))


def combine(group: str, source: str, files: Sequence[FileMetrics]) -> GroupMetrics:
    """One group from its files: SLOC summed, CC averaged over every block of them all."""
    n_blocks = sum(f.n_blocks for f in files)
    cc_total = sum(f.cc_total for f in files)
    return GroupMetrics(group=group, source=source, files=tuple(f.path for f in files),
                        sloc=sum(f.sloc for f in files),
                        average_cc=cc_total / n_blocks if n_blocks else math.nan,
                        n_blocks=n_blocks)


# Our package ----------------------------------------------------------------------------


def resolve_files(root: str | os.PathLike[str], entries: Iterable[str], group: str
                  ) -> list[Path]:
    """The files of ``group``: each entry relative to ``root``, a folder (``nn/``) standing
    for every ``.py`` file below it, sorted. A missing entry is a :class:`FileNotFoundError`
    naming it, so a renamed module cannot silently drop out of the count."""
    root = Path(root)
    files: list[Path] = []
    for entry in entries:
        path = root / entry
        if path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(
                f"complexity group {group!r}: configured file {entry!r} does not exist "
                f"under {root}; fix the path in the config (complexity.models or "
                "complexity.core)."
            )
    return list(dict.fromkeys(files))


def measure_files(root: str | os.PathLike[str], entries: Iterable[str], group: str,
                  source: str = OURS) -> tuple[GroupMetrics, list[FileMetrics]]:
    """Measure the files of ``group`` under ``root``; also returns each file's numbers."""
    root = Path(root)
    files = [measure_source(path.relative_to(root).as_posix(), path.read_text())
             for path in resolve_files(root, entries, group)]
    return combine(group, source, files), files


# Source distributions -------------------------------------------------------------------


def _sdist_files(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """The regular files of an sdist by path relative to its single top folder
    (``name-version/``)."""
    return {member.name.partition("/")[2]: member
            for member in archive.getmembers() if member.isfile()}


def _chosen(entry: str, paths: Iterable[str]) -> list[str]:
    """The paths an entry stands for: a folder entry (ending in ``/``) every ``.py`` file
    below it, a file entry itself."""
    if entry.endswith("/"):
        return sorted(p for p in paths if p.startswith(entry) and p.endswith(".py"))
    return [entry] if entry in paths else []


def read_sdist_sources(sdist: str | os.PathLike[str], entries: Iterable[str], group: str
                       ) -> dict[str, str]:
    """The text of ``entries`` inside the ``.tar.gz`` ``sdist``, by path relative to its
    top folder (``scvi_tools-1.4.2/``), read without extracting. A folder entry (ending in
    ``/``) stands for every ``.py`` file below it; a missing entry is a
    :class:`FileNotFoundError` naming it and the sdist."""
    with tarfile.open(sdist, "r:gz") as archive:
        members = _sdist_files(archive)
        sources: dict[str, str] = {}
        for entry in entries:
            chosen = _chosen(entry, members)
            if not chosen:
                raise FileNotFoundError(
                    f"complexity group {group!r}: {entry!r} is not in {Path(sdist).name}; "
                    "fix the path in complexity.peers (paths are relative to the sdist's "
                    "top folder)."
                )
            for path in chosen:
                handle = archive.extractfile(members[path])
                assert handle is not None  # a regular file always has a stream
                sources[path] = handle.read().decode("utf-8")
    return sources


def measure_sdist(sdist: str | os.PathLike[str], entries: Iterable[str], group: str,
                  source: str) -> tuple[GroupMetrics, list[FileMetrics]]:
    """Measure the files of ``group`` read from the source distribution ``sdist``."""
    files = [measure_source(path, text)
             for path, text in read_sdist_sources(sdist, entries, group).items()]
    return combine(group, source, files), files


def recorded_group(group: str, source: str, entries: Sequence[str],
                   recorded: Mapping[str, float]) -> GroupMetrics:
    """A peer group's numbers as recorded in the config (offline runs), labelled so."""
    return GroupMetrics(group=group, source=source, files=tuple(entries),
                        sloc=int(recorded["sloc"]), average_cc=float(recorded["average_cc"]),
                        n_blocks=int(recorded["n_blocks"]), how=RECORDED)


def peer_source(peer: Mapping[str, object]) -> str:
    """The table's source of a peer: ``<package> <version>``."""
    return f"{peer['package']} {peer['version']}"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ChecksumError(ValueError):
    """A downloaded sdist is not the one whose numbers the config records."""


def download_sdist(package: str, version: str, sdist: str, sha256: str,
                   target: str | os.PathLike[str], index_url: str | None = None,
                   find_links: str | None = None) -> Path:
    """Fetch ``package==version``'s source distribution with ``pip download`` (the running
    interpreter's pip), check its SHA-256 and move it onto ``target``.

    ``index_url`` replaces PyPI; ``find_links`` (a folder or URL of sdists) makes pip look
    there alone (``--no-index``), so tests and mirrors need no network. pip writes into a
    temporary folder beside ``target`` and the file is moved with ``os.replace`` only
    once its checksum matches: a failed or mismatched download leaves no file behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"{package}=={version}", "--disable-pip-version-check"]
    if index_url:
        command += ["--index-url", index_url]
    if find_links:
        command += ["--no-index", "--find-links", find_links]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as folder:
        run = subprocess.run([*command, "--dest", folder], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        if run.returncode != 0:
            raise RuntimeError(
                f"pip download of {package}=={version} failed (exit {run.returncode}); no "
                "network or no such package on the index. The default offline config "
                "(complexity.download: false in config/config.yaml) does not need it: it "
                "uses the recorded counts. Set complexity.index_url or complexity.find_links "
                f"to a mirror, or run where PyPI is reachable. pip said:\n{run.stdout[-3000:]}"
            )
        downloaded = Path(folder) / sdist
        if not downloaded.is_file():
            raise FileNotFoundError(
                f"pip download of {package}=={version} wrote {sorted(os.listdir(folder))}, "
                f"not {sdist}; fix complexity.peers.*.sdist."
            )
        actual = sha256_of(downloaded)
        if actual != sha256:
            raise ChecksumError(
                f"{sdist}: sha256 {actual} does not match the recorded {sha256}. The index "
                "serves a different file than the one measured for the recorded counts; "
                "check the mirror, or, if the new file is trusted, measure it and record "
                "its sha256 and counts in complexity.peers."
            )
        os.chmod(downloaded, 0o644)
        os.replace(downloaded, target)
    return target


# The table, the claims ------------------------------------------------------------------


def complexity_table(groups: Iterable[GroupMetrics]) -> pd.DataFrame:
    """One row per group (:data:`TABLE_COLUMNS`), in the order given."""
    return pd.DataFrame([g.row() for g in groups], columns=TABLE_COLUMNS)


def files_table(per_group: Mapping[tuple[str, str], Sequence[FileMetrics]]) -> pd.DataFrame:
    """One row per measured file: group, source, path, sloc, cc_total, n_blocks."""
    rows = [{"group": group, "source": source, "path": f.path, "sloc": f.sloc,
             "cc_total": f.cc_total, "n_blocks": f.n_blocks}
            for (group, source), files in per_group.items() for f in files]
    return pd.DataFrame(rows, columns=["group", "source", "path", "sloc", "cc_total",
                                       "n_blocks"])


def _row(table: pd.DataFrame, group: str, source: str) -> pd.Series:
    match = table[(table["group"] == group) & (table["source"] == source)]
    if len(match) != 1:
        raise ValueError(f"the complexity table has {len(match)} rows of group {group!r} "
                         f"from {source!r}, expected one.")
    return match.iloc[0]


def complexity_claims(table: pd.DataFrame, reimplementation_source: str,
                      original_source: str, max_line_ratio: float) -> pd.DataFrame:
    """The claim check of paper Fig. 5c, and ours against scvi-tools' Stereoscope.

    Rows: scvi-tools' Stereoscope SLOC over the original's, whole and core, at most
    ``max_line_ratio`` (the paper's "60 % fewer lines", a figure rounded to the nearest
    ten, is 0.45); its average CC below the original's (the paper's "marked reduction in
    code complexity"); and our Stereoscope's SLOC below scvi-tools' when the config
    measures it: else that row says it was not checked, and the overall row covers the
    rows checked.
    """
    ours_key, theirs_key = "ours", "scvi_tools"
    scvi = _row(table, STEREOSCOPE, reimplementation_source)
    whole = _row(table, STEREOSCOPE, original_source)
    core = _row(table, ORIGINAL_CORE, original_source)
    claims = [
        Claim(
            claim=f"scvi-tools' Stereoscope needs about 60 % fewer lines than the original "
                  f"({label})",
            quantity=f"SLOC, {reimplementation_source} / {original_source} {label}",
            compared={theirs_key: float(scvi["sloc"]), "original": float(original["sloc"])},
            value=float(scvi["sloc"]) / float(original["sloc"]),
            criterion=Criterion("SLOC ratio", "<=", max_line_ratio),
        )
        for label, original in (("whole package", whole), ("core modules", core))
    ]
    claims.append(Claim(
        claim="scvi-tools' Stereoscope has a lower average cyclomatic complexity than the "
              "original (whole package)",
        quantity=f"average CC per block, {reimplementation_source} / {original_source}",
        compared={theirs_key: float(scvi["average_cc"]),
                  "original": float(whole["average_cc"])},
        value=float(scvi["average_cc"]) / float(whole["average_cc"]),
        criterion=Criterion("average CC ratio", "<", 1.0),
    ))
    ours = table[(table["group"] == STEREOSCOPE) & (table["source"] == OURS)]
    if len(ours):
        claims.append(Claim(
            claim="our Stereoscope is shorter than scvi-tools' (model files, shared core "
                  "apart)",
            quantity=f"SLOC, ours / {reimplementation_source}",
            compared={ours_key: float(ours.iloc[0]["sloc"]), theirs_key: float(scvi["sloc"])},
            value=float(ours.iloc[0]["sloc"]) / float(scvi["sloc"]),
            criterion=Criterion("SLOC ratio", "<", 1.0),
        ))
    checks = claims_table(claims, overall="every claim checked holds",
                          overall_quantity="all of the rows above that were checked")
    checks.insert(len(checks.columns) - 1, "note", "")
    if not len(ours):
        skipped = pd.DataFrame([{
            "claim": "our Stereoscope is shorter than scvi-tools' (model files, shared core "
                     "apart)",
            "quantity": f"SLOC, ours / {reimplementation_source}",
            "note": "not checked: no Stereoscope in complexity.models",
        }])
        # The skipped row goes before the overall row, which it does not count in.
        checks = pd.concat([checks.iloc[:-1], skipped, checks.iloc[-1:]], ignore_index=True)
    return checks


def recorded_note(table: pd.DataFrame) -> str:
    """A one-line note for logs and figures: which peer rows are recorded, not measured."""
    recorded = table[table["how"] == RECORDED]
    if recorded.empty:
        return "every number measured in this run"
    names = ", ".join(f"{g} ({s})" for g, s in zip(recorded["group"], recorded["source"],
                                                   strict=True))
    return f"recorded in the config, not measured in this run: {names}"



def measure_study(settings: Mapping[str, object], package_root: str | os.PathLike[str],
                  sdists: Mapping[str, str | os.PathLike[str]] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The complexity table and its per-file detail for the config's ``complexity`` block.

    Our models, then our shared core (files under ``package_root``), then each peer's
    groups: measured from ``sdists[peer]`` (the downloaded ``.tar.gz``) when given, else
    the counts the config records for them.
    """
    groups: list[GroupMetrics] = []
    per_file: dict[tuple[str, str], list[FileMetrics]] = {}
    ours = {**settings["models"], "core": settings["core"]}
    for name, entries in ours.items():
        group, files = measure_files(package_root, entries, name)
        groups.append(group)
        per_file[(name, OURS)] = files
    for key, peer in settings["peers"].items():
        source = peer_source(peer)
        for name, spec in peer["groups"].items():
            if sdists is not None and key in sdists:
                group, files = measure_sdist(sdists[key], spec["files"], name, source)
                per_file[(name, source)] = files
            else:
                group = recorded_group(name, source, spec["files"], spec["recorded"])
            groups.append(group)
    return complexity_table(groups), files_table(per_file)
