"""The jobs as users run them: `ray job submit` against a local `ray start --head` on 127.0.0.1
(token authentication on, as Ray 2.60 ships it), and evaluate.py on a user's own mocap npz.

Ray 2.60 turns token auth on by default: `ray start --head` writes ~/.ray/auth_token and the
`ray job` CLI must run with RAY_AUTH_MODE=token to send it (or start the head with
RAY_AUTH_MODE=disabled — tests only). The README documents this.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               RAY_USAGE_STATS_ENABLED="0", RAY_DATA_DISABLE_PROGRESS_BARS="1")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head --block` on free loopback ports; this process owns and stops it."""
    tmp = Path(os.environ.get("RAY_TMPDIR", tmp_path_factory.mktemp("rayhead"))) / f"head{os.getpid()}"
    dash = free_port()
    ports = {"--port": free_port(), "--dashboard-port": dash, "--node-manager-port": free_port(),
             "--object-manager-port": free_port(), "--ray-client-server-port": free_port(),
             "--dashboard-agent-listen-port": free_port(), "--dashboard-agent-grpc-port": free_port(),
             "--metrics-export-port": free_port(), "--runtime-env-agent-port": free_port()}
    cmd = [RAY, "start", "--head", "--block", "--num-cpus=2", "--node-ip-address=127.0.0.1",
           "--dashboard-host=127.0.0.1", f"--temp-dir={tmp}", "--include-dashboard=true",
           *[f"{k}={v}" for k, v in ports.items()]]
    log = open(tmp_path_factory.mktemp("headlog") / "head.log", "w")
    proc = subprocess.Popen(cmd, env=_env(RAY_AUTH_MODE="token"), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while time.time() < deadline:
        r = subprocess.run([RAY, "job", "list", "--address", address], env=_env(RAY_AUTH_MODE="token"),
                           capture_output=True, text=True)
        if r.returncode == 0:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited: {Path(log.name).read_text()[-2000:]}")
        time.sleep(2)
    else:
        raise RuntimeError("the Ray head's job server did not come up")
    yield address
    os.killpg(proc.pid, signal.SIGTERM)  # our own process group only: `ray start --block` and its children
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_ray_job_submit_pretrain(ray_head, tmp_path):
    storage = tmp_path / "runs"
    r = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head, "--working-dir", str(REPO), "--",
         "python", "jobs/pretrain.py", "--config", "configs/pstmo_s_smoke.yaml",
         "--set", f"train.storage_path={storage}", "--set", "train.steps_per_epoch=2",
         "--set", "data.max_sequences=4", "--set", "train.val_max_clips=64"],
        env=_env(RAY_AUTH_MODE="token"), capture_output=True, text=True, timeout=540)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("checkpoint: ")]
    assert lines, out[-4000:]
    path = Path(lines[-1].split("checkpoint: ", 1)[1].strip())
    assert path.is_dir() and (path / "model.pt").is_file() and str(path).startswith(str(storage))
    assert "[pretrain] epoch 2/2" in out and "succeeded" in out


def test_evaluate_job_on_a_users_mocap(shared_data, tmp_path):
    """jobs/evaluate.py --data: any VideoPose3D-layout npz through virtual cameras → JSON + table."""
    from tests.train._helpers import run_local, tiny_config
    from raypose.train import checkpoint as ck

    cfg = tiny_config("train.epochs=1")
    worker = run_local(cfg, "finetune")
    ckpt = ck.write_checkpoint(tmp_path / "ck", worker.strategy, worker.progress, worker.cfg, "finetune")
    out = tmp_path / "res.json"
    args = [sys.executable, "jobs/evaluate.py", "--checkpoint", str(ckpt), "--data",
            str(shared_data / "mocap_h36m17.npz"),
            "--no-flip", "--out", str(out)]
    r = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    res = json.loads(out.read_text())
    assert res["split"] == "all" and res["flip"] is False and res["frames"] > 10000
    for key in ("mpjpe", "p_mpjpe", "n_mpjpe"):
        assert res[key] > 0
    assert {"climb_0", "walk"} <= set(res["per_action"])
    assert "MPJPE" in r.stdout and "P-MPJPE" in r.stdout


def test_evaluate_job_on_real_calibrated_detections(shared_data, tmp_path):
    """jobs/evaluate.py --calibrated: real OpenPose 2D of 4 calibrated cameras, lifted per camera,
    scored against the triangulated 3D seen from each camera."""
    from tests.train._helpers import run_local, tiny_config
    from raypose.train import checkpoint as ck

    worker = run_local(tiny_config("train.epochs=1"), "finetune")
    ckpt = ck.write_checkpoint(tmp_path / "ck", worker.strategy, worker.progress, worker.cfg, "finetune")
    out = tmp_path / "cams.json"
    args = [sys.executable, "jobs/evaluate.py", "--checkpoint", str(ckpt), "--calibrated",
            str(shared_data / "pose2sim_demo.npz"), "--out", str(out)]
    r = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    res = json.loads(out.read_text())
    assert [c["camera"] for c in res["cameras"]] == [0, 1, 2, 3]
    assert all(c["frames"] == 100 for c in res["cameras"]) and res["frames"] == 400
    assert res["mpjpe"] == pytest.approx(sum(c["mpjpe"] for c in res["cameras"]) / 4)
    assert 0 < res["p_mpjpe"] <= res["mpjpe"]
    assert "| all " in r.stdout
