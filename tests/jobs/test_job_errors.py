"""Jobs end in a clear error, before Ray starts, when the configuration cannot work."""
from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import REPO


def test_pretrain_on_h36m_subjects_with_the_embedded_data_fails_fast():
    # the original failure: S1…S11 match none of the embedded subjects, so the run trained on
    # nothing (0 steps, NaN loss), wrote a checkpoint and exited 0
    t0 = time.time()
    out = subprocess.run([sys.executable, "jobs/pretrain.py", "--config", "configs/pstmo.yaml"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("error: data.train_subjects names subjects no source has: S1, S5, S6, S7;")
    assert "known subjects: climb_a, climb_b, cmu_02, cmu_06, deepmimic" in err
    assert "checkpoint:" not in out.stdout and "Traceback" not in out.stderr
    assert "Ray" not in out.stdout + out.stderr.replace("raypose", "")   # Ray never started
    assert time.time() - t0 < 60
