"""The benchmark scripts' plumbing (their figures are measured by running them, never asserted):
bench/gpu.sh parses, refuses a machine without CUDA, and its CPU dry run writes a report with
every section; bench/infer.py names a missing reference checkout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU_SH = REPO / "bench" / "gpu.sh"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable}


def test_gpu_bench_parses_and_refuses_a_machine_without_cuda(tmp_path):
    assert subprocess.run(["bash", "-n", str(GPU_SH)], capture_output=True).returncode == 0
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be seen here")
    proc = subprocess.run(["bash", str(GPU_SH), str(tmp_path / "out")], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 2 and "sees no CUDA device" in proc.stderr and "--dry-run" in proc.stderr


@pytest.mark.slow
def test_gpu_bench_dry_run_writes_every_section(tmp_path):
    """The same steps at toy sizes on the CPU: training (Ray Train vs bare), lifting, ingest."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(GPU_SH), "--dry-run", str(out)], capture_output=True, text=True,
                          env=_env(), timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = (out / "gpu_bench.md").read_text()
    for heading in ("## 1. Training step", "## 2. Lifting frames/s", "## 3. Ray Data ingest"):
        assert heading in report
    assert "Ray Train, 1 worker" in report and "overhead" in report      # bench/train_step.py
    assert "inference f/s" in report                                     # bench/infer.py
    assert "clips/s" in report and "Ray Data, local Parquet" in report   # bench/ingest.py


def test_infer_bench_names_a_directory_that_is_not_the_reference(tmp_path, script):
    bench = script("bench/infer.py")
    with pytest.raises(SystemExit, match="no model/stmo.py"):
        bench.reference_model(str(tmp_path), "pstmo_s", 81)


def test_online_bench_times_both_windows_beside_offline(script, capsys):
    """bench/online.py replays the real detections once per window kind; the table has both
    rows, with the centred window's delay and none for the causal one."""
    bench = script("bench/online.py")
    assert bench.main(["--repeats", "1", "--threads", "1", "--no-flip"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| centred") or line.startswith("| causal")]
    assert len(rows) == 2
    assert "8 frames = 267 ms" in rows[0] and "0 frames = 0 ms" in rows[1]
