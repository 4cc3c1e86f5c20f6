"""Fixtures of the Python package's tests: the default model and the `qrt` command to compare with.

QRT_DEFAULT_MODEL (scripts/test.sh sets it) names the model; without it the tests that need it
skip. QRT_CLI names the `qrt` binary whose output the package must match (a missing one is a
failure); without it build/qrt is used when present."""

import os
import pathlib
import subprocess

import pytest

import qrt

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_path() -> str:
    path = os.environ.get("QRT_DEFAULT_MODEL", "")
    if not path or not os.path.exists(path):
        pytest.skip("QRT_DEFAULT_MODEL is not set or missing (scripts/fetch-model.sh fetches the default model)")
    return path


@pytest.fixture(scope="session")
def model(model_path: str) -> qrt.Model:
    return qrt.Model(model_path, device="cpu")


@pytest.fixture(scope="session")
def cli() -> str:
    path = os.environ.get("QRT_CLI", "")
    if path:  # named by the caller (tests/package/run.sh): it must be there
        assert os.access(path, os.X_OK), f"QRT_CLI={path} is not an executable"
        return path
    path = str(REPO / "build" / "qrt")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no qrt command at {path} (set QRT_CLI)")
    return path


def run_cli(cli: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)
