"""The workflow's one way to fetch a declared input file: from its URL (or the same path on
a mirror) with pooch's HTTP downloader, checked against its declared size and sha256, and
moved into place only once verified.

A file is declared by a :class:`Source` (in the config, or in a ``sources.tsv`` table read
by :func:`read_sources`). :func:`fetch` either returns a verified file or raises
:class:`DownloadError` and leaves nothing at the target, so a half-written or wrong file
is never mistaken for the data. Where no checksum is published (``sha256`` None), the first
fetch records the file's sha256 and size beside it (``<file>.sha256``) and every later
fetch is checked against that record. docs/downloads.md describes the settings.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import pooch
import requests
import urllib3

log = logging.getLogger(__name__)

# The columns a sources table must name in its header (any order, others ignored).
SOURCES_COLUMNS = ("path", "url", "sha256", "bytes")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# What to do about each kind of failure; the first half of every message says what came.
FIX_SERVER = ("Check the mirror setting (download.mirror) and that the server is up and holds "
              "this path, then re-run.")
FIX_TIMEOUT = ("Check the mirror setting (download.mirror) and that the server is up, or raise "
               "download.timeout_s, then re-run.")
FIX_TRUNCATED = "The transfer was cut short: re-run to download it again."
FIX_SIZE = ("The server sends a different file than the one declared: check the mirror setting "
            "(download.mirror) and the declared size and sha256.")
FIX_CHECKSUM = ("The file at the source changed or is corrupt: check the mirror setting "
                "(download.mirror); update the declared sha256 only if the new file is "
                "trusted.")
FIX_LOCAL = "Free disk space or fix the folder's permissions, then re-run."


class DownloadError(RuntimeError):
    """A declared file could not be fetched as declared; nothing is left at its target."""


@dataclass(frozen=True)
class Source:
    """One declared file: where it is published, its sha256 and size in bytes (None where
    none is published: recorded at the first fetch), and ``path``, where it lands below the
    destination folder (default: the URL's path)."""

    url: str
    sha256: str | None
    size: int | None
    path: str | None = None

    def __post_init__(self) -> None:
        # Checked here so a typo in the config fails at once, naming the entry, rather
        # than as a confusing download error (or a file written outside the folder).
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"source URL {self.url!r} is not an http(s) URL.")
        sha256 = None if self.sha256 is None else str(self.sha256).lower()
        self._check_checksum(sha256)
        path = self.path if self.path is not None else unquote(parts.path).lstrip("/")
        if not _inside_folder(path):
            raise ValueError(f"source {self.url}: path {path!r} must be relative, inside the "
                             "destination folder (no '..', no leading '/').")
        object.__setattr__(self, "sha256", sha256)
        object.__setattr__(self, "path", str(PurePosixPath(path)))

    def _check_checksum(self, sha256: str | None) -> None:
        if sha256 is not None and not _SHA256.match(sha256):
            raise ValueError(f"source {self.url}: sha256 {self.sha256!r} is not 64 hex digits "
                             "(or null where none is published).")
        if self.size is not None and (isinstance(self.size, bool)
                                      or not isinstance(self.size, int) or self.size < 0):
            raise ValueError(f"source {self.url}: size {self.size!r} is not a byte count.")

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain values (what a Snakemake ``params`` entry carries)."""
        return {"path": self.path, "url": self.url, "sha256": self.sha256, "size": self.size}


def read_sources(path: str | os.PathLike[str]) -> list[Source]:
    """The sources of a tab-separated table: ``#`` comment lines, a header naming
    :data:`SOURCES_COLUMNS`, one file per line (``bytes`` is the size)."""
    header: list[str] | None = None
    sources = []
    with open(path, newline="") as stream:
        for number, line in enumerate(stream, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if header is None:
                header = _sources_header(fields, f"{path}:{number}")
                continue
            sources.append(_source_row(header, fields, f"{path}:{number}"))
    check_unique(sources)
    return sources


def _sources_header(fields: list[str], where: str) -> list[str]:
    missing = [c for c in SOURCES_COLUMNS if c not in fields]
    if missing:
        raise ValueError(f"{where}: the header lacks the column(s) {', '.join(missing)} "
                         f"(tab-separated: {' '.join(SOURCES_COLUMNS)}).")
    return fields


def _source_row(header: list[str], fields: list[str], where: str) -> Source:
    if len(fields) != len(header):
        raise ValueError(f"{where}: {len(fields)} tab-separated fields, expected "
                         f"{len(header)} ({', '.join(header)}).")
    row = dict(zip(header, fields, strict=True))
    try:
        # An empty sha256 or bytes field: not published, recorded at the first fetch.
        return Source(url=row["url"], sha256=row["sha256"] or None,
                      size=int(row["bytes"]) if row["bytes"] else None,
                      path=row["path"] or None)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def sources_from_config(settings: Mapping[str, Any], root: str | Path = ".") -> list[Source]:
    """The sources of the config's ``download`` block: its ``sources`` entries
    (``url``, ``sha256``, ``size``, optional ``path``), then the rows of its
    ``sources_tsv`` table (a relative path is read from ``root``, the workflow's
    repository), if any."""
    sources = [Source(url=entry["url"], sha256=entry["sha256"], size=entry["size"],
                      path=entry.get("path")) for entry in settings.get("sources") or []]
    if settings.get("sources_tsv"):
        sources.extend(read_sources(Path(root) / settings["sources_tsv"]))
    check_unique(sources)
    return sources


def _inside_folder(path: str) -> bool:
    """Whether ``path`` is relative and stays inside the folder it is joined to."""
    if not path or "\\" in path or PurePosixPath(path).is_absolute():
        return False
    return not any(part in ("..", ".") for part in path.split("/"))


def check_unique(sources: Iterable[Source]) -> None:
    """Raise ``ValueError`` if two sources land on the same path (one would overwrite the
    other)."""
    seen: dict[str | None, str] = {}
    for source in sources:
        if source.path in seen:
            raise ValueError(f"two sources land on {source.path}: {seen[source.path]} and "
                             f"{source.url}.")
        seen[source.path] = source.url


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host (and port) replaced by those of ``mirror``, a base
    URL whose path, if any, is put before the URL's path; ``None`` leaves it unchanged.

    ``mirror_url("https://host/a/b.csv", "http://127.0.0.1:8000/data")`` is
    ``"http://127.0.0.1:8000/data/a/b.csv"``.
    """
    if mirror is None:
        return url
    base = urlsplit(mirror)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ValueError(f"mirror {mirror!r} is not an http(s) base URL such as "
                         "http://127.0.0.1:8000/data.")
    parts = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path,
                       parts.query, parts.fragment))


def fetch(source: Source, destination: str | os.PathLike[str], mirror: str | None = None,
          timeout: float = 30.0) -> Path:
    """The verified file of ``source`` at ``destination / source.path``, downloaded if it is
    not already there.

    A file already at the target with the declared size and sha256 is returned without any
    network access. A wrong one is removed first (it is never kept as if it were the data).
    The download goes into a temporary file beside the target, is checked for size, then
    sha256, and only then renamed onto the target. ``timeout`` (seconds) bounds the wait for
    the connection and for each read. Any failure raises :class:`DownloadError` naming the
    URL requested, what was expected, what came and what to do; no file is left behind.
    """
    assert source.path is not None  # set by Source.__post_init__
    target = Path(destination) / source.path
    url = mirror_url(source.url, mirror)
    if source.sha256 is None:
        recorded = read_record(target)
        if recorded is None:
            return _fetch_and_record(source, target, url, timeout)
        source = replace(source, sha256=recorded[0], size=recorded[1])
    stale = None
    if target.is_file():
        found = _mismatch(target, source)
        if found is None:
            log.info("%s: already present, %d bytes with sha256 %s", target, source.size,
                     source.sha256)
            return target
        # Removed before the download so that a failure leaves nothing, never the wrong file.
        target.unlink()
        stale = f"The file that was at the target ({found[0]}) did not match and was removed."
        log.warning("%s: %s", target, stale)
    log.info("downloading %s to %s", url, target)
    with _partial_file(url, target, source, stale) as partial:
        problem = _download(url, partial, timeout) or _mismatch(partial, source)
        if problem is not None:
            raise DownloadError(_message(url, target, source, problem, stale))
        os.replace(partial, target)
    log.info("%s: %d bytes with sha256 %s, as declared", target, source.size, source.sha256)
    return target


def record_path(target: Path) -> Path:
    """Where the first fetch of a file without a published checksum records it."""
    return target.with_name(target.name + ".sha256")


def read_record(target: Path) -> tuple[str, int] | None:
    """The sha256 and size recorded at the first fetch of ``target``, if any."""
    path = record_path(target)
    if not path.is_file():
        return None
    sha256, size = path.read_text().split()[:2]
    return sha256, int(size)


def _fetch_and_record(source: Source, target: Path, url: str, timeout: float) -> Path:
    """First fetch of a file without a published checksum: the declared size (if any) is
    checked, then the file and its record (sha256 and size) are moved into place."""
    if target.is_file():
        # A file without its record cannot be trusted: it may be a half-kept old copy.
        target.unlink()
    log.info("downloading %s to %s (no published sha256: recorded at this first fetch)", url,
             target)
    with _partial_file(url, target, source) as partial:
        problem = _download(url, partial, timeout)
        size = partial.stat().st_size
        if problem is None and source.size is not None and size != source.size:
            problem = f"received {size} bytes", FIX_SIZE
        if problem is not None:
            raise DownloadError(_message(url, target, source, problem, None))
        digest = pooch.file_hash(str(partial), alg="sha256")
        record = record_path(target)
        record.write_text(f"{digest}  {size}  {source.url}\n")
        os.replace(partial, target)
    log.warning("%s: %d bytes with sha256 %s, recorded in %s: declare them in the config "
                "so that every copy is checked against this one", target, size, digest,
                record)
    return target


@contextmanager
def _partial_file(url: str, target: Path, source: Source, stale: str | None = None
                  ) -> Iterator[Path]:
    """A temporary file beside ``target``, readable by all, removed unless renamed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                            suffix=".part")
    except OSError as error:
        raise DownloadError(_message(url, target, source, _local_failure(error), stale)) from None
    os.close(descriptor)
    # mkstemp creates the file readable by its owner only; the data is not private.
    os.chmod(name, 0o644)
    partial = Path(name)
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def _download(url: str, partial: Path, timeout: float) -> tuple[str, str] | None:
    """Transfer ``url`` into ``partial``; on failure, (what came, what to do)."""
    downloader = pooch.HTTPDownloader(timeout=timeout, progressbar=False)
    try:
        downloader(url, str(partial), None)
    except requests.HTTPError as error:
        response = error.response
        return f"the server answered HTTP {response.status_code} {response.reason}", FIX_SERVER
    except requests.RequestException as error:
        if _timed_out(error):
            return f"no answer within {timeout:g} s", FIX_TIMEOUT
        if isinstance(error, requests.exceptions.ChunkedEncodingError):
            received = partial.stat().st_size
            return f"the connection broke after {received} bytes", FIX_TRUNCATED
        if isinstance(error, requests.ConnectionError):
            return f"no connection ({_reason(error)})", FIX_SERVER
        return f"the request failed ({type(error).__name__}: {error})", FIX_SERVER
    except OSError as error:
        return _local_failure(error)
    return None


def _mismatch(path: Path, source: Source) -> tuple[str, str] | None:
    """None if ``path`` has the declared size and sha256; else (what it is, what to do).
    The size is checked first: it is free, and a wrong size needs no hashing."""
    size = path.stat().st_size
    if size != source.size:
        return f"received {size} bytes", FIX_SIZE
    digest = pooch.file_hash(str(path), alg="sha256")
    if digest != source.sha256:
        return f"received {size} bytes with sha256 {digest}", FIX_CHECKSUM
    return None


def _message(url: str, target: Path, source: Source, problem: tuple[str, str],
             stale: str | None) -> str:
    came, fix = problem
    expected = (f"{source.size} bytes with sha256 {source.sha256}" if source.sha256 else
                f"{'any number of' if source.size is None else source.size} bytes (no "
                "published sha256)")
    message = f"download of {url} to {target} failed: {came}; expected {expected}. {fix}"
    return f"{message} {stale}" if stale else message


def _local_failure(error: OSError) -> tuple[str, str]:
    return f"writing the file failed ({error.strerror or error})", FIX_LOCAL


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception it wraps (requests nests urllib3's, which nest the
    socket's), each once."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [*current.args, current.__cause__, current.__context__,
                  getattr(current, "reason", None)]
        pending.extend(e for e in nested if isinstance(e, BaseException))


def _timed_out(error: requests.RequestException) -> bool:
    # A timeout while reading the body reaches us as a ConnectionError wrapping urllib3's
    # ReadTimeoutError, not as requests.Timeout.
    return isinstance(error, requests.Timeout) or any(
        isinstance(e, urllib3.exceptions.ReadTimeoutError | TimeoutError)
        for e in _causes(error))


def _reason(error: requests.RequestException) -> str:
    """The operating system's words for a failed connection ("Connection refused")."""
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return str(error)
