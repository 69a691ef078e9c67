"""The pinned environments agree with each other and pin everything."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.\-+]+)$")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "envs" / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = PIN.match(line.strip())
            assert match, f"unpinned line in requirements.lock: {line!r}"
            pins[match[1].lower()] = match[2]
    return pins


def test_lock_pins_torch_cpu_release() -> None:
    assert _lock()["torch"] == "2.13.0"


def test_conda_mirror_lists_exactly_the_lock() -> None:
    env = yaml.safe_load((REPO / "envs" / "scprob.yaml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    mirrored = {}
    for line in pip_block:
        match = PIN.match(line)
        assert match, f"unpinned pip line in scprob.yaml: {line!r}"
        mirrored[match[1].lower()] = match[2]
    assert mirrored == _lock()


def test_pyproject_pins_agree_with_the_lock() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    lock = _lock()
    for requirement in declared:
        match = PIN.match(requirement)
        assert match, f"pyproject dependency not pinned exactly: {requirement!r}"
        assert lock[match[1].lower()] == match[2], requirement
