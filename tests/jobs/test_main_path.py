"""The README's first path, exactly as a new user runs it: `raypose pretrain` with no arguments,
`raypose finetune --init` from its checkpoint, `raypose evaluate --checkpoint latest` on the
embedded subject never seen in training — and the lifter must clearly learn (≤ 150 mm). (Its time, 2 min 29 s on an idle 2-core
machine, is in the README; speed is not asserted here.)"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _job(*args: str, storage: Path, terminal: list[str] | None = None) -> str:
    """Run a job as a user does; its stdout (``terminal`` gets every line it printed, both streams)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray, as a user gets
    raypose = str(Path(sys.executable).parent / "raypose")                # the console script
    done = subprocess.run([raypose, *args, "--set", f"train.storage_path={storage}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if terminal is not None:
        terminal.extend((done.stdout + done.stderr).splitlines())
    return done.stdout


def _checkpoint(out: str) -> str:
    return re.findall(r"^checkpoint: (.+)$", out, re.M)[-1]


def test_pretrain_finetune_evaluate_with_no_arguments_learns(tmp_path):
    terminal: list[str] = []
    pre_out = _job("pretrain", storage=tmp_path, terminal=terminal)
    pre = _checkpoint(pre_out)

    # a quiet console: a header, the epochs, curves and checkpoint; Ray's chatter only in the log
    assert len(terminal) <= 20, "\n".join(terminal)
    assert terminal[0].startswith("run: pretrain pstmo_s") and sum(l.startswith("[pretrain] epoch") for l in terminal) == 3
    internal = ("PlacementGroupCleaner", "TrainController", "Execution plan", "INFO", "Deprecat", "pid=")
    assert not [line for line in terminal if any(word in line for word in internal)], "\n".join(terminal)
    log = (Path(pre).parent / "console.log").read_text()
    assert "Started a local Ray instance" in log and "[pretrain] epoch 3/3" in log
    assert "Failed to query Ray Train Controller" not in log        # the dashboard serves the state API
    ft_out = _job("finetune", "--init", pre, storage=tmp_path)
    ft = _checkpoint(ft_out)
    report = _job("evaluate", "--checkpoint", "latest", "--out", str(tmp_path / "eval.json"), storage=tmp_path)
    mpjpe = float(re.search(r"^MPJPE ([\d.]+) mm", report, re.M).group(1))
    assert "split test" in report and mpjpe <= 150.0, report

    # every run leaves its curves; evaluation its per-action table and per-joint errors
    for out, ckpt in ((pre_out, pre), (ft_out, ft)):
        curves = Path(ckpt).parent / "curves.png"
        assert f"curves: {curves}" in out and _is_png(curves)
    assert all(_is_png(tmp_path / f"eval_{kind}.png") for kind in ("actions", "joints"))
    joints = json.loads((tmp_path / "eval.json").read_text())["per_joint"]
    assert len(joints) == 17 and joints["pelvis"] < joints["r_wrist"]        # root-relative: pelvis ≈ 0

    # `raypose plot` redraws and compares runs from their checkpoints' history
    from raypose.checkpoints import run_history
    from raypose.cli import main as raypose

    stage, history = run_history(str(Path(ft).parent))
    assert stage == "finetune" and [h["epoch"] for h in history] == list(range(len(history)))
    assert all(h["lr"] > 0 and h["samples_per_s"] > 0 and h["val_mpjpe"] > 0 for h in history)
    assert raypose(["plot", str(Path(pre).parent), str(Path(ft).parent), "--out", str(tmp_path / "both.png")]) == 0
    assert _is_png(tmp_path / "both.png")


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
