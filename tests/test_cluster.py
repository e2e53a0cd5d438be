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


@pytest.fixture(scope="module")
def fake_cluster(tmp_path_factory):
    """A head node on the fake_multinode provider, with the one always-on data node up."""
    tmp = tmp_path_factory.mktemp("fake_cluster")
    port = free_port()
    address = f"127.0.0.1:{port}"
    cfg = yaml.safe_load(LOCAL_YAML.read_text())
    cfg["provider"]["gcs_address"] = address
    cfg_path = tmp / "autoscale.yaml"
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
        _wait_for_nodes(address, env, lambda n: n >= 2, 90)
        yield address, env, temp_dir
    finally:
        _stop_cluster(temp_dir)


def _wait_for_nodes(address: str, env: dict, ok, seconds: float) -> int:
    deadline = time.time() + seconds
    alive = _alive_nodes(address, env)
    while not ok(alive) and time.time() < deadline:
        time.sleep(2)
        alive = _alive_nodes(address, env)
    return alive


def _finetune(env: dict, storage: Path, name: str, log_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "jobs" / "finetune.py"), "--config",
         str(REPO / "configs" / "pstmo_s_smoke.yaml"),
         "--set", "train.num_workers=3", "--set", "train.cpus_per_worker=1",
         "--set", f"train.storage_path={storage}", "--set", f"train.run_name={name}",
         # stream the chunks (no up-front cut into the object store): with the data node idle when
         # the workers are placed, the CPU-only twin would put a training worker on it and add
         # only two training nodes (on cluster.yaml training needs a GPU node either way)
         "--set", "data.cache_mb=0", *extra],
        env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, text=True)


def _finish(run: subprocess.Popen, log_path: Path, seconds: float) -> str:
    try:
        run.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait(timeout=60)
    out = log_path.read_text()
    assert run.returncode == 0, out[-4000:]
    assert out.strip().splitlines()[-1].startswith("checkpoint: "), out[-2000:]
    return out.strip().splitlines()[-1][len("checkpoint: "):]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_autoscaler_adds_nodes_for_a_training_run_and_removes_them_when_idle(fake_cluster, tmp_path):
    address, env, _ = fake_cluster
    assert _alive_nodes(address, env) == 2, "head + data node before the run, no training node"
    log_path = tmp_path / "run.log"
    run = _finetune(env, tmp_path / "runs", "autoscale", log_path, "--set", "train.epochs=1")
    peak = 1
    deadline = time.time() + 420
    while run.poll() is None and time.time() < deadline:
        peak = max(peak, _alive_nodes(address, env))
        time.sleep(2)
    _finish(run, log_path, 30)
    assert peak >= 5, f"the autoscaler should have added 3 training nodes, saw {peak} nodes"
    # Idle nodes go after idle_timeout_minutes (6 s here); the data node's min_workers=1 stays.
    alive = _wait_for_nodes(address, env, lambda n: n <= 2, 120)
    assert alive == 2, f"idle training nodes were not removed ({alive} alive)"


def _node_hosting_a_training_worker(temp_dir: Path):
    """The raylet of a fake node that runs a Ray Train worker (its children are the workers)."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if not ("raylet" in cmd and str(temp_dir) in cmd and "trainer_slot" in cmd):
                continue
            kids = p.children(recursive=True)
            if any("RayTrainWorker" in " ".join(k.cmdline()) for k in kids):
                return p, kids
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None, []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_losing_a_node_mid_run_resumes_from_the_last_checkpoint(fake_cluster, tmp_path):
    """A training node dies after epoch 1's checkpoint: the autoscaler replaces it, Ray Train
    restarts the worker group from that checkpoint, and no epoch is lost or repeated."""
    from raypose.train.checkpoint import read_meta

    address, env, temp_dir = fake_cluster
    storage = tmp_path / "runs"
    log_path = tmp_path / "run.log"
    # epochs of 120 steps (seconds each): the node must die while the run is still training, and
    # since a worker keeps its shard after the first pass, the smoke config's 4-step epochs end
    # in a blink — the run would be over before the test found the node
    run = _finetune(env, storage, "nodeloss", log_path, "--set", "train.epochs=3",
                    "--set", "train.steps_per_epoch=120", "--set", "train.max_failures=2")
    deadline = time.time() + 300
    while run.poll() is None and time.time() < deadline and not list(storage.glob("**/checkpoint_*")):
        time.sleep(1)
    assert run.poll() is None, log_path.read_text()[-3000:]
    raylet, workers = None, []
    while raylet is None and time.time() < deadline:
        raylet, workers = _node_hosting_a_training_worker(temp_dir)
        time.sleep(0.5)
    assert raylet is not None, "no node hosts a training worker"
    import psutil

    for proc in [raylet, *workers]:  # the node is gone: its raylet and every worker on it
        try:
            proc.kill()
        except psutil.NoSuchProcess:  # a worker exits by itself once its raylet is gone
            pass
    _finish(run, log_path, 480)
    last = sorted(storage.glob("**/checkpoint_epoch*"))[-1]
    history = read_meta(last)["progress"].history
    assert [h["epoch"] for h in history] == [0, 1, 2], f"epochs lost or repeated: {history}"
    steps = [h["step"] for h in history]
    assert steps == sorted(steps) and len(set(steps)) == 3, steps
    # A second worker group (other processes) finished the run after resuming: the run's full
    # log keeps Ray's "(RayTrainWorker pid=…)" prefixes the quiet terminal drops
    out = (storage / "nodeloss" / "console.log").read_text()
    pids = {line.split("pid=")[1].split(")")[0] for line in out.splitlines()
            if "[finetune] epoch" in line and "pid=" in line}
    assert len(pids) >= 2, f"the run was not restarted on new workers: {sorted(pids)}"


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
