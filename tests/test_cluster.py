"""cluster.yaml passes Ray's own schema; the local twin autoscales a real training run.

The autoscaling test starts a real head node with Ray's fake_multinode provider (every
"node" is a set of raylet processes on this machine), submits a 3-worker fine-tuning run while
no worker node is up, watches the autoscaler add nodes, the run finish, and the idle nodes go.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, free_port

CLUSTER_YAML = REPO / "cluster.yaml"
LOCAL_YAML = REPO / "configs" / "cluster" / "local_fake.yaml"
RAY = str(Path(sys.executable).with_name("ray"))


def test_cluster_yaml_passes_ray_schema_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)  # raises jsonschema.ValidationError on any schema violation

    types = raw["available_node_types"]
    assert raw["head_node_type"] == "head"
    assert types["head"]["resources"]["CPU"] == 0, "the head must not run training"
    gpu = types["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert types["cpu_worker"]["min_workers"] == 0
    assert raw["idle_timeout_minutes"] > 0
    # Nothing open to the world: only SSH, from a named CIDR.
    perms = raw["provider"]["security_group"]["IpPermissions"]
    assert [(p["FromPort"], p["ToPort"]) for p in perms] == [(22, 22)]
    assert all(r["CidrIp"] != "0.0.0.0/0" for p in perms for r in p["IpRanges"])
    head_start = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "RAY_AUTH_MODE=token" in head_start
    assert any("torch==2.13.0" in c for c in raw["setup_commands"])


def test_local_twin_has_the_same_worker_types():
    from ray.autoscaler._private.util import validate_config

    local = yaml.safe_load(LOCAL_YAML.read_text())
    remote = yaml.safe_load(CLUSTER_YAML.read_text())
    assert set(local["available_node_types"]) - {"ray.head.default"} == \
        set(remote["available_node_types"]) - {"head"}
    assert local["available_node_types"]["ray.head.default"]["resources"]["CPU"] == 0
    # The fake provider ships no defaults file in the wheel, so the twin is complete as written
    # and goes straight to the schema check.
    validate_config(copy.deepcopy(local))


def _alive_nodes(address: str, env: dict) -> int:
    code = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', "
            "log_to_driver=False); print('ALIVE=%d' % sum(n['Alive'] for n in ray.nodes()))")
    out = subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True,
                         text=True, timeout=60)
    found = [line for line in out.stdout.splitlines() if line.startswith("ALIVE=")]
    return int(found[-1][6:]) if found else -1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_autoscaler_adds_nodes_for_a_training_run_and_removes_them_when_idle(tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    cfg = yaml.safe_load(LOCAL_YAML.read_text())
    cfg["provider"]["gcs_address"] = address
    cfg_path = tmp_path / "autoscale.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    env = dict(os.environ, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1",
               RAY_AUTH_MODE="disabled", RAY_ADDRESS=address, PYTHONPATH=str(REPO))
    temp_dir = Path(os.environ["RAY_TMPDIR"]) / f"fake{port}"
    head = subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--num-cpus=0", '--resources={"driver": 1}',
         f"--dashboard-port={free_port()}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
         f"--autoscaling-config={cfg_path}", f"--temp-dir={temp_dir}"],
        env=env, capture_output=True, text=True, timeout=120)
    assert head.returncode == 0, head.stderr[-2000:]
    try:
        # Before the run: the head and the one always-on data node (cpu_worker min_workers=1).
        deadline = time.time() + 90
        while _alive_nodes(address, env) < 2 and time.time() < deadline:
            time.sleep(2)
        assert _alive_nodes(address, env) == 2, "head + data node should be up before the run"
        log_path = tmp_path / "run.log"
        log = log_path.open("w")
        run = subprocess.Popen(
            [sys.executable, str(REPO / "jobs" / "finetune.py"), "--config",
             str(REPO / "configs" / "pstmo_s_smoke.yaml"),
             "--set", "train.num_workers=3", "--set", "train.cpus_per_worker=1",
             "--set", "train.epochs=1", "--set", f"train.storage_path={tmp_path / 'runs'}",
             "--set", "train.run_name=autoscale"],
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        peak = 1
        deadline = time.time() + 420
        while run.poll() is None and time.time() < deadline:
            peak = max(peak, _alive_nodes(address, env))
            time.sleep(2)
        if run.poll() is None:
            run.kill()
        run.wait(timeout=60)
        log.close()
        out = log_path.read_text()
        print(out[-3000:])
        assert run.returncode == 0, out[-4000:]
        assert out.strip().splitlines()[-1].startswith("checkpoint: "), out[-2000:]
        assert peak >= 5, f"the autoscaler should have added 3 training nodes, saw {peak} nodes"

        # Idle nodes are removed after idle_timeout_minutes (6 s here).
        deadline = time.time() + 120
        alive = _alive_nodes(address, env)
        while alive > 2 and time.time() < deadline:
            time.sleep(3)
            alive = _alive_nodes(address, env)
        assert alive == 2, f"idle training nodes were not removed ({alive} alive)"
    finally:
        _stop_cluster(temp_dir)


def _stop_cluster(temp_dir: Path) -> None:
    """Stop only this cluster's processes (``ray stop`` would stop every Ray on the machine)."""
    import psutil

    def ours() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(str(temp_dir) in part for part in (p.info["cmdline"] or [])):
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    for sig in ("terminate", "kill"):
        procs = ours()
        for p in procs:
            try:
                getattr(p, sig)()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=15)
