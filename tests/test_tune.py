"""The Tune search: space from the config, trial configs, and a real smoke search on a local
Ray head (2 CPUs, the embedded mocap, the tiny APTPose) that is killed after its first finished
trial and resumed with ``Tuner.restore`` — finished trials must not run again."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raypose import config, tune
from raypose.errors import ConfigError

from conftest import REPO, free_port

SMOKE = REPO / "configs" / "tune_smoke.yaml"


# --------------------------------------------------------------------------------------------
# no Ray needed
# --------------------------------------------------------------------------------------------

def test_space_from_config_becomes_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    cfg = config.load(SMOKE)
    space = tune.search_space(cfg)
    assert set(space) == set(cfg.tune.space)
    assert isinstance(space["masking.temporal_ratio"], Float)
    assert (space["masking.temporal_ratio"].lower, space["masking.temporal_ratio"].upper) == (0.4, 0.95)
    assert isinstance(space["masking.spatial_joints"], Integer)
    assert isinstance(space["masking.strategy"], Categorical)
    assert space["masking.strategy"].categories == ["spatiotemporal", "hierarchical"]
    assert type(space["loss.rec_3d"].get_sampler()).__name__ == "_LogUniform"
    grid = tune.search_space(cfg.with_overrides({"tune.search": "grid"}))
    assert grid["masking.strategy"] == {"grid_search": ["spatiotemporal", "hierarchical"]}
    assert grid["masking.spatial_joints"] == {"grid_search": list(range(0, 7))}


@pytest.mark.parametrize("key, spec, problem", [
    ("masking.nope", {"type": "uniform", "low": 0, "high": 1}, "not a config key"),
    ("masking.temporal_ratio", {"type": "gaussian"}, "needs type"),
    ("masking.temporal_ratio", {"type": "uniform", "low": 0.9, "high": 0.1}, "low < high"),
    ("loss.rec_3d", {"type": "loguniform", "low": 0.0, "high": 1.0}, "low > 0"),
    ("masking.temporal_ratio", {"type": "uniform", "low": 0.5, "high": 1.5}, "temporal_ratio"),
])
def test_bad_space_fails_before_ray(key, spec, problem):
    cfg = config.load(SMOKE, {"tune.space": {key: spec}})
    with pytest.raises(ConfigError, match=problem):
        tune.search_space(cfg)


def test_unknown_subjects_fail_before_ray(tmp_path):
    import ray

    cfg = config.load(SMOKE, {"data.test_subjects": ["S9"]})
    started = ray.is_initialized()   # another test's Ray may be running in this session
    with pytest.raises(ConfigError, match="test_subjects names subjects no source has: S9"):
        tune.run_search(cfg, out_dir=tmp_path)
    assert ray.is_initialized() == started and not any(tmp_path.iterdir())


def test_papers_points_and_trial_config():
    cfg = config.load(SMOKE)
    points = tune.initial_points(cfg)
    assert {"masking.strategy": "spatiotemporal", "masking.temporal_ratio": 0.8,
            "masking.spatial_joints": 2, "loss.rec_2d": 1.0, "loss.rec_3d": 0.1} in points  # P-STMO
    assert any(p["masking.temporal_ratio"] == 0.6 and p["masking.spatial_joints"] == 5 for p in points)  # MPM
    assert any(p["masking.strategy"] == "hierarchical" for p in points)  # APTPose
    narrow = cfg.with_overrides({"tune.space": {"masking.temporal_ratio": cfg.tune.space["masking.temporal_ratio"]}})
    assert tune.initial_points(narrow) == [{"masking.temporal_ratio": 0.8}, {"masking.temporal_ratio": 0.6}]

    import numpy as np

    trial = tune.trial_config(cfg, {"masking.spatial_joints": np.int64(4), "loss.rec_3d": 2.5}, "abc_00001")
    assert trial.masking.spatial_joints == 4 and trial.loss.rec_3d == 2.5
    from raypose.train.run import stage_config

    pre, fine = stage_config(trial, "pretrain"), stage_config(trial, "finetune")
    assert (pre.train.epochs, pre.train.run_name) == (cfg.tune.pretrain_epochs, "abc_00001-pretrain")
    assert (fine.train.epochs, fine.train.run_name) == (cfg.tune.finetune_epochs, "abc_00001-finetune")
    assert trial.train.storage_path.endswith(f"{cfg.tune.name}/trials")


def test_the_label_study_search_is_valid_and_in_the_five_percent_regime():
    """configs/label_study/tune.yaml (docs/results.md, section 4): every point and the space pass
    the checks a search makes before Ray starts, and its trials fine-tune on 5 % of the labels
    with climb_b, the test person, out of reach."""
    from raypose.train.run import stage_config

    cfg = config.load(REPO / "configs" / "label_study" / "tune.yaml")
    tune.check_space(cfg)
    assert set(tune.search_space(cfg)) == {"masking.temporal_ratio", "masking.spatial_joints", "loss.rec_2d",
                                           "loss.rec_3d", "loss.single_frame"}
    for point in tune.initial_points(cfg):
        trial = tune.trial_config(cfg, point, "t_00000")
        fine = stage_config(trial, "finetune")
        assert fine.data.label_fraction == 0.05 and fine.train.epochs == cfg.tune.finetune_epochs
        assert "climb_b" not in fine.data.train_subjects + fine.data.val_subjects
    assert cfg.tune.max_concurrent_trials == 1 and cfg.train.cpus_per_worker <= 0.5  # NOTES.md: Ray Data needs a CPU


def test_the_mask_ratio_plot_keeps_labels_of_one_point_apart(tmp_path):
    """Two trials at the papers' point (as a search's first points often are) must both be readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = config.load(SMOKE)
    rows = [{"masking.temporal_ratio": 0.6, "masking.spatial_joints": 5, tune.METRIC: v, "status": st}
            for v, st in ((144.7, "completed"), (159.0, "stopped"))]
    rows.append({"masking.temporal_ratio": 0.2, "masking.spatial_joints": 1, tune.METRIC: 130.0, "status": "completed"})
    png = tune.plot_mask_ratios(rows, cfg, tmp_path / "m.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, ax = plt.subplots()
    tune._annotate_apart(ax, [(0.6, 5, "a"), (0.6, 5, "b"), (0.2, 1, "c")])
    offsets = {t.get_text(): t.xyann for t in ax.texts}
    plt.close(fig)
    assert offsets["a"][1] != offsets["b"][1] and offsets["c"] == offsets["a"]


def test_concurrency_from_cluster_resources():
    cfg = config.load(SMOKE)  # 1 worker × 0.4 CPU + 0.1 for the trial function
    assert tune.max_concurrent_trials(cfg, {"CPU": 2.0}) == 2
    assert tune.max_concurrent_trials(cfg, {"CPU": 1.0}) == 1
    assert tune.max_concurrent_trials(cfg, {"CPU": 16.0}) == 30
    gpu = cfg.with_overrides({"train.use_gpu": True, "train.cpus_per_worker": 4.0})
    assert tune.max_concurrent_trials(gpu, {"CPU": 64.0, "GPU": 8.0}) == 8
    assert tune.max_concurrent_trials(gpu, {"CPU": 9.0, "GPU": 8.0}) == 1
    assert tune.max_concurrent_trials(cfg.with_overrides({"tune.max_concurrent_trials": 3}), {"CPU": 1}) == 3


def test_optuna_is_optional():
    cfg = config.load(SMOKE, {"tune.search": "optuna"})
    try:
        import optuna  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="optuna"):
            tune.search_algorithm(cfg, [], 1)
    else:
        assert tune.search_algorithm(cfg, [], 1) is not None


def test_s3_storage_for_search_trials_and_stage_records(s3_server):
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=s3_server.endpoint, allow_bucket_creation=True).create_dir("rp-tune")
    cfg = config.load(SMOKE, {"tune.storage_path": "s3://rp-tune/searches",
                              "train.s3_endpoint": s3_server.endpoint})
    path, fs = tune.tune_storage(cfg)
    assert path == "rp-tune/searches" and isinstance(fs, pafs.S3FileSystem)
    assert tune.experiment_uri(cfg) == "s3://rp-tune/searches/tune-smoke"
    assert tune.default_out_dir(cfg) == Path("tune_results") / "tune-smoke"
    trial = tune.trial_config(cfg, {}, "abc_00000")
    assert trial.train.storage_path == "s3://rp-tune/searches/tune-smoke/trials"
    run_dir = f"{trial.train.storage_path}/abc_00000-pretrain"
    assert tune.read_done(trial, run_dir) is None
    record = {"checkpoint": f"{run_dir}/checkpoint_epoch0000", "seconds": 12.5}
    tune.write_done(trial, run_dir, record)
    assert tune.read_done(trial, run_dir) == record
    assert fs.get_file_info(f"{path}/tune-smoke/trials/abc_00000-pretrain/{tune.DONE_FILE}").size > 0


# --------------------------------------------------------------------------------------------
# a real search, interrupted and resumed
# --------------------------------------------------------------------------------------------

def _wait_port(port: int, deadline: float) -> None:
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def ray_head(tmp_path):
    """A 2-CPU Ray head with its dashboard (Train's placement-group cleaner needs the state API)
    on free loopback ports; ``ray start --block`` keeps it a child we can stop."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    gcs, dash = free_port(), free_port()
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
           "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=2", "--num-gpus=0",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
           f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
           f"--ray-client-server-port={free_port()}", "--disable-usage-stats"]
    log = (tmp_path / "head.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(dash, time.time() + 90)
        yield f"127.0.0.1:{gcs}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _driver(args: list[str], address: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "disabled",
           "TUNE_GLOBAL_CHECKPOINT_S": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "jobs" / "tune.py"), *args], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _trial_states(experiment: Path) -> dict[str, str]:
    """trial id → status from Tune's newest experiment state file (empty while none is readable)."""
    files = sorted(experiment.glob("experiment_state-*.json"))  # named by start time; restore adds one
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    states = [json.loads(t[0]) for t in data["trial_data"]]
    return {s["trial_id"]: s["status"] for s in states}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """File → (size, mtime) under a Train run folder (only Train writes there)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def _results(trial_dir: Path) -> bytes:
    """Tune's result log of a trial (restore rewrites the files, with the same content)."""
    return (trial_dir / "result.json").read_bytes()


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


@pytest.mark.timeout(480)
def test_smoke_search_resumes_after_kill(tmp_path, ray_head):
    store, out = tmp_path / "store", tmp_path / "out"
    args = ["--config", str(SMOKE), "--set", f"tune.storage_path={store}", "--set", "tune.name=smoke",
            "--out", str(out)]
    experiment = store / "smoke"
    t0 = time.time()

    # 1) start the search; kill its driver once the first trial has finished
    first_log = tmp_path / "first.log"
    first = _driver(args, ray_head, first_log)
    terminated: list[str] = []
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        states = _trial_states(experiment)
        terminated = [t for t, s in states.items() if s == "TERMINATED"]
        if terminated:
            break
        time.sleep(0.5)
    assert terminated, f"no trial finished in time:\n{_tail(first_log)}"
    assert first.poll() is None, f"the search ended before it could be interrupted:\n{_tail(first_log)}"
    first.kill()
    first.wait()
    interrupted_at = time.time() - t0
    states = _trial_states(experiment)
    terminated = [t for t, s in states.items() if s == "TERMINATED"]
    unfinished = [t for t, s in states.items() if s != "TERMINATED"]
    assert terminated and unfinished
    finished_files = {t: (_results(experiment / f"trial_{t}"),
                          _snapshot(experiment / "trials" / f"{t}-pretrain"),
                          _snapshot(experiment / "trials" / f"{t}-finetune")) for t in terminated}
    pretrained = {t: (experiment / "trials" / f"{t}-pretrain" / tune.DONE_FILE).read_bytes()
                  for t in unfinished if (experiment / "trials" / f"{t}-pretrain" / tune.DONE_FILE).exists()}

    # 2) resume: Tuner.restore finishes the rest
    second_log = tmp_path / "second.log"
    second = _driver([*args, "--resume"], ray_head, second_log)
    try:
        rc = second.wait(timeout=max(30.0, 450 - (time.time() - t0)))
    except subprocess.TimeoutExpired:
        second.kill()
        pytest.fail(f"the resumed search did not finish:\n{_tail(second_log)}")
    assert rc == 0, _tail(second_log)
    total = time.time() - t0
    print(f"interrupted after {interrupted_at:.0f}s, finished after {total:.0f}s")

    # every trial ran to an end (completed, or stopped by ASHA); the finished ones were not rerun
    final = _trial_states(experiment)
    assert len(final) >= 4 and set(final.values()) == {"TERMINATED"}, final
    for t, (trial_dir, pre, fine) in finished_files.items():
        assert _results(experiment / f"trial_{t}") == trial_dir, f"finished trial {t} reported again"
        assert _snapshot(experiment / "trials" / f"{t}-pretrain") == pre
        assert _snapshot(experiment / "trials" / f"{t}-finetune") == fine
    for t, done in pretrained.items():  # an interrupted trial kept its finished pretraining
        assert (experiment / "trials" / f"{t}-pretrain" / tune.DONE_FILE).read_bytes() == done

    # the table: one row per trial, params -> finite val MPJPE (mm) and time
    rows = json.loads((out / "trials.json").read_text())
    assert sorted(r["trial_id"] for r in rows) == sorted(final)
    cfg = config.load(SMOKE)
    for r in rows:
        assert set(cfg.tune.space) <= set(r)
        assert r["status"] in ("completed", "stopped")
        assert r[tune.METRIC] is not None and 0 < r[tune.METRIC] < 5000
        assert r["time_s"] > 0 and 1 <= r["finetune_epochs"] <= cfg.tune.finetune_epochs
    assert any(r["status"] == "completed" for r in rows)
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert {"trial_id", "val_mpjpe", "time_s", *cfg.tune.space} <= set(header)
    paper = [r for r in rows if r["masking.temporal_ratio"] == 0.6 and r["masking.spatial_joints"] == 5]
    assert paper, "the MPM point was not evaluated"

    # the best config: a loadable fine-tuning YAML from the best completed trial's pretraining
    completed = [r for r in rows if r["status"] == "completed"]
    best = min(completed, key=lambda r: r[tune.METRIC])
    best_cfg = config.load(out / "best_finetune.yaml")
    assert best_cfg.train.stage == "finetune"
    assert best_cfg.train.init == best["pretrain_checkpoint"] and Path(best_cfg.train.init).is_dir()
    for key in cfg.tune.space:
        section, name = key.split(".")
        assert getattr(getattr(best_cfg, section), name) == best[key]
    assert best_cfg.model.name == cfg.model.name

    # the plot
    png = (out / "mask_ratios.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
