"""The README's first path, exactly as a new user runs it: `python jobs/pretrain.py` with no
arguments, `finetune --init` from its checkpoint, `evaluate` on the embedded subject never seen in
training — and the lifter must clearly learn (≤ 150 mm). (Its time, 2 min 37 s on an idle 2-core
machine, is in the README; speed is not asserted here.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _job(*args: str, storage: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray, as a user gets
    done = subprocess.run([sys.executable, *args, "--set", f"train.storage_path={storage}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _checkpoint(out: str) -> str:
    return re.findall(r"^checkpoint: (.+)$", out, re.M)[-1]


def test_pretrain_finetune_evaluate_with_no_arguments_learns(tmp_path):
    pre = _checkpoint(_job("jobs/pretrain.py", storage=tmp_path))
    ft = _checkpoint(_job("jobs/finetune.py", "--init", pre, storage=tmp_path))
    report = _job("jobs/evaluate.py", "--checkpoint", ft, storage=tmp_path)
    mpjpe = float(re.search(r"^MPJPE ([\d.]+) mm", report, re.M).group(1))
    assert "split test" in report and mpjpe <= 150.0, report
