"""Shared test set-up: quiet, fast, loopback-only Ray; a real S3 server on 127.0.0.1."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

_TMP = Path(tempfile.gettempdir()) / f"rp{os.getpid()}"
_TMP.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("RAY_TMPDIR", str(_TMP))
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(_TMP / "torch_ext"))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# S3 credentials for the moto server, set before any Ray starts: Ray's workers and the Train
# controller inherit the environment of the session's first ray.init, not later changes.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


def load_script(relative: str):
    """A repo script that is not a package module (bench/*.py, jobs/*.py), imported by path."""
    import importlib.util

    path = REPO / relative
    if str(path.parent) not in sys.path:       # as `python jobs/x.py` would: its folder importable
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def script():
    """:func:`load_script` for tests: ``script("bench/accuracy.py")``."""
    return load_script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_shared(path: Path, what: str) -> Path:
    """``path`` under ../shared, or a test failure saying what is missing and where.

    Why fail, not skip: a checkout without ../shared would otherwise pass with most model,
    pipeline, training and inference tests silently skipped. Tests that can run on the data
    embedded in the package (raypose/assets/mocap_small.npz) use that instead.
    """
    if not path.exists():
        pytest.fail(f"missing test data: {path} ({what}) does not exist; the tests need the shared "
                    f"data folder beside this checkout at {SHARED} (see its data/README.md)",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real mocap, detections, video); the test fails if it is missing."""
    require_shared(SHARED_DATA / "mocap_h36m17.npz", "the shared real data")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (2 CPUs, no dashboard), shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(_TMP / "ray"))
    yield ray
    ray.shutdown()


class S3Server:
    """moto's standalone S3 server on a free loopback port, restartable mid-test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def s3_server():
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = S3Server()
    server.start()
    yield server
    server.stop()
