"""3D pose completion (`raypose complete`): a small MPM stage I trained here on real mocap fills
joints and frames of a person it never saw, accurately; observed joints are kept exactly; the
command reads and writes files; bad input and wrong checkpoints are clear errors."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from raypose import complete as C
from raypose.errors import RayposeDataError
from tests.data.formats import read_position_bvh

REPO = Path(__file__).resolve().parents[1]
FPS = 50.0
#: bounds on the hidden joints' error a small model trained for 30 s must meet on climb_b
JOINTS_BOUND_MM = 230.0
LIMBS_BOUND_MM = 380.0


def _tiny_config(shared: Path):
    from raypose import config as config_mod

    return config_mod.load(str(REPO / "configs" / "mpm_complete.yaml")).with_overrides({
        "data.sources": [{"name": "mocap", "format": "mocap", "path": str(shared / "mocap_h36m17.npz"),
                          "virtual_cameras": 2},
                         {"name": "cmu", "format": "mocap", "path": str(shared / "cmu_h36m17.npz"),
                          "virtual_cameras": 1}],
        "data.train_subjects": [], "data.val_subjects": [], "data.test_subjects": ["climb_b"],
        "data.batch_size": 16, "model.dim": 64, "model.depth": 1, "model.heads": 2, "model.ffn_dim": 128,
        "model.sem_hidden": 128, "model.decoder_dim": 64, "train.epochs": 1, "train.steps_per_epoch": 200,
        "train.stage_overrides": {}, "train.stage": "pretrain", "train.seed": 0})


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """(checkpoint dir, Completer, training seconds): MPM stage I on all shared mocap but climb_b."""
    from raypose.evaluate import split_chunks
    from raypose.train.local import fit_in_process

    torch.set_num_threads(2)
    cfg = _tiny_config(shared_data)
    t0 = time.perf_counter()
    chunks, _ = split_chunks(cfg.data, "train", 0)
    out = tmp_path_factory.mktemp("mpm") / "checkpoint"
    fit_in_process(cfg, chunks, out)
    return out, C.load_completer(str(out)), time.perf_counter() - t0


@pytest.fixture(scope="module")
def climb_b(shared_data) -> np.ndarray:
    """The held-out person, world space, Z up, 50 fps (the first 600 frames: 12 s)."""
    from raypose.data.sources.mocap import read_mocap

    return read_mocap(shared_data / "mocap_h36m17.npz", FPS, subjects=["climb_b"])[0].positions_3d[:600].astype(np.float64)


def _limbs_hidden(poses: np.ndarray) -> np.ndarray:
    """Each limb in turn hidden for 1 s of every 2 s (a model sees none of it for 50 frames)."""
    from raypose.skeleton import LIMBS

    out = poses.copy()
    for i, start in enumerate(range(0, len(out), 100)):
        out[start + 25:start + 75, list(LIMBS[i % 4])] = np.nan
    return out


def _err_mm(pred: np.ndarray, truth: np.ndarray, hidden: np.ndarray) -> float:
    return float(np.linalg.norm(pred - truth, axis=-1)[hidden].mean() * 1000)


def _joints_hidden(poses: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """``k`` of 17 joints hidden per frame, drawn anew in every frame (MPM's spatial masking)."""
    out = poses.copy()
    order = np.random.default_rng(seed).random((len(poses), 17)).argsort(1)[:, :k]
    out[np.arange(len(poses))[:, None], order] = np.nan
    return out


@pytest.mark.parametrize("hide, bound_mm, vs_root", [(_joints_hidden, JOINTS_BOUND_MM, 0.45),
                                                      (_limbs_hidden, LIMBS_BOUND_MM, 0.7)])
def test_hidden_joints_of_a_new_person_are_filled_accurately(trained, climb_b, hide, bound_mm, vs_root):
    _, completer, seconds = trained
    partial = hide(climb_b)
    hidden = C.missing_joints(partial)
    done = C.complete_sequence(completer, partial, FPS, "z")
    assert np.array_equal(done.poses[~hidden], partial[~hidden])          # observed joints: exact
    assert np.array_equal(done.filled, hidden) and np.isfinite(done.poses).all()
    model = _err_mm(done.poses, climb_b, hidden)
    # the trivial fill: every hidden joint at the pelvis (its error is the joint's reach)
    at_root = _err_mm(np.repeat(climb_b[:, :1], 17, 1), climb_b, hidden)
    assert model < bound_mm and model < vs_root * at_root, (model, at_root, seconds)
    # and the model uses what it sees: the same hidden joints completed from the observations of
    # frames 5 s away are far worse
    far = np.roll(climb_b, 250, axis=0)
    far[hidden] = np.nan
    moved = C.complete_sequence(completer, far, FPS, "z").poses
    assert _err_mm(moved, climb_b, hidden) > model + 20


def test_missing_frames_are_filled_from_the_frames_around_them(trained, climb_b):
    _, completer, _ = trained
    partial = climb_b.copy()
    for start in range(20, len(partial), 40):
        partial[start:start + 10] = np.nan                                 # 10-frame gaps
    hidden = C.missing_joints(partial)
    done = C.complete_sequence(completer, partial, FPS, "z")
    assert np.array_equal(done.poses[~hidden], partial[~hidden]) and done.fallback_frames == 0
    model = _err_mm(done.poses, climb_b, hidden)
    # the trivial fill, given the true pelvis: every hidden joint at it
    at_root = _err_mm(np.repeat(climb_b[:, :1], 17, 1), climb_b, hidden)
    assert model < 260.0 and model < 0.7 * at_root, (model, at_root)


def test_a_missing_pelvis_sits_between_the_hips_and_other_rates_are_resampled(trained, climb_b):
    _, completer, _ = trained
    partial = climb_b[:200].copy()
    partial[::3, 0] = np.nan                                               # pelvis lost in a third of frames
    partial[50:80, 13] = np.nan
    done = C.complete_sequence(completer, partial, FPS, "z")
    np.testing.assert_allclose(done.poses[::3, 0], climb_b[:200:3, 0], atol=1e-6)
    # the same motion at 100 fps (every frame doubled by interpolation) completes alike
    fast = np.repeat(partial, 2, 0)
    quick = C.complete_sequence(completer, fast, 2 * FPS, "z")
    assert np.array_equal(quick.poses[~C.missing_joints(fast)], fast[~C.missing_joints(fast)])
    assert _err_mm(quick.poses[::2], climb_b[:200], C.missing_joints(partial)) < 100


def test_y_up_input_completes_like_z_up(trained, climb_b):
    _, completer, _ = trained
    partial = _limbs_hidden(climb_b[:200])
    z = C.complete_sequence(completer, partial, FPS, "z").poses
    y_up = C.from_z_up(partial, "y")
    assert C.detect_up_axis(y_up) == "y" and C.detect_up_axis(partial) == "z"
    y = C.complete_sequence(completer, y_up, FPS, "y").poses
    np.testing.assert_allclose(C.to_z_up(y, "y"), z, atol=1e-4)


def test_baselines(climb_b):
    from raypose.skeleton import LIMBS

    partial = climb_b.copy()
    partial[100:110] = np.nan
    interp = C.interpolate_missing(partial)
    line = climb_b[99] + (climb_b[110] - climb_b[99]) * (np.arange(1, 11) / 11)[:, None, None]
    np.testing.assert_allclose(interp[100:110], line, atol=1e-12)
    assert np.array_equal(interp[:100], climb_b[:100])
    ends = climb_b.copy()
    ends[:5, 3] = np.nan
    assert np.array_equal(C.interpolate_missing(ends)[:5, 3], np.repeat(climb_b[5:6, 3], 5, 0))  # held
    # nearest pose: a bank holding the true poses (turned about the vertical, moved) finds them
    angle = 1.1
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    bank = C.NearestPose.from_sequences([climb_b @ rot.T + np.array([3.0, -2.0, 0.0])])
    hide = climb_b.copy()
    hide[:, list(LIMBS[2])] = np.nan
    # (a neighbouring frame, within a millimetre, may tie with the true one in float32)
    np.testing.assert_allclose(bank.fill(hide), climb_b, atol=2e-3)


def test_the_command_completes_a_file_to_npz_and_bvh(trained, climb_b, tmp_path, capsys):
    from raypose import cli

    ckpt, completer, _ = trained
    partial = _limbs_hidden(climb_b[:150])
    np.savez(tmp_path / "partial.npz", positions_3d=partial, fps=np.array(FPS))
    assert cli.main(["complete", "--input", str(tmp_path / "partial.npz"), "--out", str(tmp_path / "done.npz"),
                     "--checkpoint", str(ckpt)]) == 0
    out = np.load(tmp_path / "done.npz")
    assert set(out.files) >= {"track_0", "frames_0", "filled_0", "joint_names", "fps"}
    hidden = C.missing_joints(partial)
    np.testing.assert_allclose(out["track_0"], C.complete_sequence(completer, partial, FPS, "z").poses, atol=1e-6)
    assert np.array_equal(out["filled_0"], hidden) and np.array_equal(out["frames_0"], np.arange(150))
    assert "up z" in capsys.readouterr().out
    # centimetres with Y up, no fps in the file: --fps and --units; BVH out
    np.save(tmp_path / "cm.npy", C.from_z_up(partial, "y") * 100)
    assert cli.main(["complete", "--input", str(tmp_path / "cm.npy"), "--out", str(tmp_path / "done.bvh"),
                     "--checkpoint", str(ckpt), "--units", "cm", "--fps", "50"]) == 0
    names, _, world = read_position_bvh(tmp_path / "done.bvh")
    order = [_names().index(n) for n in names]
    z_up = C.complete_sequence(completer, partial, FPS, "z").poses[:, order]
    expected = np.stack([z_up[..., 0], z_up[..., 2], -z_up[..., 1]], -1) * 100   # Y up, centimetres
    assert world.shape == (150, 17, 3) and "Frame Time: 0.02" in (tmp_path / "done.bvh").read_text()
    np.testing.assert_allclose(world, expected, atol=1e-2)


def _names() -> list[str]:
    from raypose.skeleton import JOINT_NAMES

    return list(JOINT_NAMES)


def test_bad_input_and_wrong_checkpoints_are_clear_errors(trained, climb_b, tmp_path, capsys):
    from raypose import cli

    ckpt = str(trained[0])

    def fails(argv: list[str], *words: str) -> None:
        with pytest.raises(SystemExit) as e:
            cli.main(["complete", *argv, "--checkpoint", ckpt])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and "Traceback" not in err
        for w in words:
            assert w in err, err

    np.save(tmp_path / "shape.npy", np.zeros((10, 16, 3)))
    fails(["--input", str(tmp_path / "shape.npy"), "--out", str(tmp_path / "o.npz")], "shape.npy", "(10, 16, 3)")
    np.save(tmp_path / "empty.npy", np.full((10, 17, 3), np.nan))
    fails(["--input", str(tmp_path / "empty.npy"), "--out", str(tmp_path / "o.npz")], "every joint of every frame")
    nopelvis = climb_b[:50].copy()
    nopelvis[:, [0, 1]] = np.nan
    np.save(tmp_path / "nopelvis.npy", nopelvis)
    fails(["--input", str(tmp_path / "nopelvis.npy"), "--out", str(tmp_path / "o.npz"), "--fps", "50",
           "--up-axis", "z"], "pelvis")
    np.save(tmp_path / "mm.npy", climb_b[:50] * 1000)
    fails(["--input", str(tmp_path / "mm.npy"), "--out", str(tmp_path / "o.npz"), "--fps", "50"], "--units")
    np.save(tmp_path / "ok.npy", climb_b[:50])
    fails(["--input", str(tmp_path / "ok.npy"), "--out", str(tmp_path / "o.npz")], "--fps")
    fails(["--input", str(tmp_path / "nothere.npz"), "--out", str(tmp_path / "o.npz")], "nothere.npz", "not found")
    fails(["--input", str(tmp_path / "ok.npy"), "--out", str(tmp_path / "o.txt"), "--fps", "50"], ".npz or .bvh")
    # a lifting (fine-tuning) checkpoint is not a completion model
    with pytest.raises(RayposeDataError, match="MPM stage I"):
        C.load_completer(str(REPO / "raypose" / "assets" / "wild_lifter"))


def test_no_arguments_runs_the_interpolation_demo_and_with_a_checkpoint_the_model_beside_it(
        trained, tmp_path, capsys):
    from raypose import cli

    assert cli.main(["complete"]) == 0
    out = capsys.readouterr().out
    assert "method: linear interpolation over time (the default without --checkpoint)" in out
    error = float(out.split("linear interpolation ")[-1].split(" mm")[0])
    assert 0 < error < 150            # an arm or leg hidden 1 s in 2 s, 10-frame gaps
    assert "pass --checkpoint" in out
    # the model's demo says which is which; the model needs its checkpoint, stated
    assert cli.main(["complete", "--checkpoint", str(trained[0]), "--out", str(tmp_path / "demo.npz")]) == 0
    out = capsys.readouterr().out
    assert "MPJPE on the hidden joints: model" in out and (tmp_path / "demo.npz").is_file()
    with pytest.raises(SystemExit) as e:
        cli.main(["complete", "--method", "model"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "pass --checkpoint" in err and "mpm_complete.yaml" in err


def test_interpolation_method_completes_a_file_without_a_model(climb_b, tmp_path, capsys):
    """The default without --checkpoint: each hidden joint linear in time between its
    observations (accurate for short gaps at 50 fps), observed joints exact; a joint never
    observed cannot be interpolated and is refused by name."""
    from raypose import cli

    partial = climb_b[:200].copy()
    partial[40:50, 13] = np.nan                     # the left wrist lost for 10 frames
    partial[100:104] = np.nan                       # four whole frames dropped
    np.save(tmp_path / "partial.npy", partial)
    assert cli.main(["complete", "--input", str(tmp_path / "partial.npy"), "--out", str(tmp_path / "o.npz")]) == 0
    done = np.load(tmp_path / "o.npz")["track_0"]
    hidden = C.missing_joints(partial)
    assert np.array_equal(done[~hidden], climb_b[:200][~hidden])
    assert C.hidden_mpjpe(done, climb_b[:200], hidden) < 30
    partial[:, 16] = np.nan                         # the right wrist never seen
    np.save(tmp_path / "never.npy", partial)
    with pytest.raises(SystemExit):
        cli.main(["complete", "--input", str(tmp_path / "never.npy"), "--out", str(tmp_path / "o.npz")])
    assert "r_wrist" in capsys.readouterr().err


def test_completion_does_not_import_the_training_package():
    import subprocess

    code = ("import sys, raypose.complete, raypose.commands.complete; "
            "bad = [m for m in sys.modules if m.startswith(('raypose.train', 'ray.train'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
