"""Evaluate a lifting checkpoint on a dataset split: the papers' protocols, per action, as JSON.

No Ray: the split's sequences are read and chunked in-process (:mod:`raypose.data.pipeline`),
every valid frame of every sequence is a clip centre (the chunk that *owns* it predicts it),
and predictions are put back in sequence order so velocity errors (MPJVE) see real neighbours.

Reported (millimetres; PCK/AUC in percent on the 3DHP protocol's 14 joints): MPJPE (#1),
P-MPJPE (#2), N-MPJPE, MPJVE, PCK@150 mm, AUC, frame-weighted over all frames, plus the
per-action table and the per-action mean (the H36M papers' headline number); for a model with a
trajectory head, the root position error (mean Euclidean distance of the camera-space pelvis, and
its depth part alone) over the frames whose root is known. Deterministic:
eval mode, no random draws, fixed data order.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from raypose import metrics, skeleton
from raypose.config import Config, DataConfig, SourceConfig
from raypose.errors import RayposeDataError

MM = 1000.0
SPLITS = ("train", "val", "test", "all")


@dataclass
class SequencePredictions:
    """Per (subject, action, camera) view: predicted and true 3D of every valid frame (metres)."""

    subject: str
    action: str
    camera: str
    pred: np.ndarray                      # (T, 17, 3)
    target: np.ndarray                    # (T, 17, 3)
    filled: np.ndarray                    # (T,) bool, frame predicted and valid
    #: Trajectory heads: predicted / true camera-space root (T, 3) metres (true z ≤ 0: unknown).
    root_pred: Optional[np.ndarray] = None
    root_target: Optional[np.ndarray] = None


@dataclass
class EvalResult:
    checkpoint: str
    split: str
    flip: bool
    model: str
    num_frames: int
    frames: int
    sequences: int
    mpjpe: float
    p_mpjpe: float
    n_mpjpe: float
    mpjve: float
    pck: float
    auc: float
    mpjpe_action_mean: float
    per_action: dict[str, dict[str, float]] = field(default_factory=dict)
    per_joint: dict[str, float] = field(default_factory=dict)     # MPJPE (mm) of each joint
    #: Trajectory heads (mm): mean camera-space root distance, its depth (z) part, frames scored.
    root_error: Optional[float] = None
    root_error_z: Optional[float] = None
    root_frames: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

def data_config_for(cfg: Config, data_path: Optional[str] = None, batch_size: int = 8) -> DataConfig:
    """The checkpoint's data settings, or a user's VideoPose3D-layout 3D npz seen through
    virtual cameras (its subjects all usable: pair with split 'all')."""
    d = cfg.data
    sources = d.sources
    if data_path:
        sources = [SourceConfig(name=Path(data_path).stem, format="mocap", path=str(data_path),
                                virtual_cameras=max(1, d.sources[0].virtual_cameras if d.sources else 4))]
        return dataclasses.replace(d, sources=sources, train_subjects=[], val_subjects=[],
                                   test_subjects=[], max_sequences=0, batch_size=batch_size,
                                   flip_augment=False, noise_std=0.0)
    return dataclasses.replace(d, batch_size=batch_size, flip_augment=False, noise_std=0.0)


def split_chunks(data_cfg: DataConfig, split: str, seed: int = 0) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """All chunks of ``split`` (numpy) and, per chunk, its view's identity and first frame."""
    from raypose.data.pipeline import CHUNK_COLUMNS, chunk_layout, chunk_table, clip_context, split_tables

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ctx = clip_context(data_cfg)
    tables = [t for s in (("train", "val", "test") if split == "all" else (split,))
              for t in split_tables(data_cfg, s, seed)]
    parts, info = [], []
    for t in tables:
        if t.num_rows == 0:
            continue
        lengths = t.column("num_frames").to_numpy().astype(np.int64)
        lay = chunk_layout(lengths, data_cfg.chunk_frames, ctx)
        parts.append(chunk_table(t, data_cfg.chunk_frames, ctx))
        subj, act, cam = (t.column(c).to_pylist() for c in ("subject", "action", "camera"))
        for row, start in zip(lay["row"], lay["start"]):
            info.append({"key": (subj[row], act[row], cam[row], id(t), int(row)), "start": int(start),
                         "num_frames": int(lengths[row])})
    if not parts:
        raise RayposeDataError(", ".join(s.path or s.name for s in data_cfg.sources),
                               f"split {split!r} has no sequences (train {data_cfg.train_subjects}, val "
                               f"{data_cfg.val_subjects}, test {data_cfg.test_subjects}): pass --split, "
                               "or --data / --calibrated to evaluate on other data")
    return {k: np.concatenate([p[k] for p in parts]) for k in CHUNK_COLUMNS}, info


# --------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------

def predict_split(model: torch.nn.Module, data_cfg: DataConfig, split: str, flip: bool,
                  device: str = "cpu", max_clips: int = 1024) -> list[SequencePredictions]:
    """Centre-frame predictions for every owned, valid frame of every view of ``split``."""
    chunks, info = split_chunks(data_cfg, split)
    return predict_chunks(model, chunks, info, data_cfg, flip, device, max_clips)


@torch.no_grad()
def predict_chunks(model: torch.nn.Module, chunks: dict[str, np.ndarray], info: list[dict[str, Any]],
                   data_cfg: DataConfig, flip: bool, device: str = "cpu",
                   max_clips: int = 1024) -> list[SequencePredictions]:
    """:func:`predict_split` on chunks already read (and, e.g., perturbed by a robustness study)."""
    from raypose.data.clips import eval_clips
    from raypose.data.pipeline import torch_dtypes
    from raypose.cameras import screen_depth_to_root
    from raypose.train.loop import _select, centre_pose, owned_clips, predict_outputs

    seqs: dict[tuple, SequencePredictions] = {}
    for c in info:
        if c["key"] not in seqs:
            t = c["num_frames"]
            seqs[c["key"]] = SequencePredictions(c["key"][0], c["key"][1], str(c["key"][2]),
                                                 np.zeros((t, 17, 3), np.float32), np.zeros((t, 17, 3), np.float32),
                                                 np.zeros(t, bool))
    dtypes = torch_dtypes()
    model = model.to(device).eval()
    n = chunks["length"].shape[0]
    for lo in range(0, n, data_cfg.batch_size):
        batch = {k: torch.as_tensor(v[lo:lo + data_cfg.batch_size]).to(device=device, dtype=dtypes[k])
                 for k, v in chunks.items()}
        for clips in eval_clips(batch, data_cfg, max_clips):
            keep = owned_clips(clips, batch)
            centre_valid = clips.valid[:, clips.centre_index]
            if clips.valid_3d is not None:  # frames with a missing 3D joint have no full target
                centre_valid = centre_valid & clips.valid_3d[:, clips.centre_index].all(-1)
            clips = _select(clips, keep & centre_valid)
            if clips.num_clips == 0:
                continue
            out = predict_outputs(model, clips, flip)
            pred = centre_pose(out).cpu().numpy()
            target = clips.centre.cpu().numpy()
            root = root_true = None
            if "trajectory" in out and clips.root_3d is not None:
                root = screen_depth_to_root(out["trajectory"][:, 0].float(), clips.camera.float()).cpu().numpy()
                root_true = clips.root_3d[:, clips.centre_index].cpu().numpy()
            for i, (ci, fi) in enumerate(zip(clips.chunk_index.tolist(), clips.frame_index.tolist())):
                meta = info[lo + ci]
                s = seqs[meta["key"]]
                frame = meta["start"] + fi
                s.pred[frame], s.target[frame], s.filled[frame] = pred[i], target[i], True
                if root is not None:
                    if s.root_pred is None:
                        s.root_pred, s.root_target = np.zeros((len(s.filled), 3), np.float32), np.zeros((len(s.filled), 3), np.float32)
                    s.root_pred[frame], s.root_target[frame] = root[i], root_true[i]
    return [s for s in seqs.values() if s.filled.any()]


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

def _runs(filled: np.ndarray) -> list[slice]:
    """Maximal runs of consecutive predicted frames (velocity needs true neighbours)."""
    out, start = [], None
    for i, f in enumerate(np.append(filled, False)):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append(slice(start, i))
            start = None
    return out


def score(seqs: list[SequencePredictions]) -> dict[str, Any]:
    """Frame-weighted metrics over every predicted frame, and the per-action table (mm): rows are
    action families (:func:`raypose.metrics.action_name`), frame-weighted within a row; the
    per-action mean is the plain mean over rows, as the papers report it."""
    if not seqs:
        raise ValueError("nothing was predicted: no valid frames with 3D ground truth")
    pred = np.concatenate([s.pred[s.filled] for s in seqs]).astype(np.float64) * MM
    target = np.concatenate([s.target[s.filled] for s in seqs]).astype(np.float64) * MM
    e1 = metrics.mpjpe(pred, target, reduce=False)
    e2 = metrics.p_mpjpe(pred, target, reduce=False)
    en = metrics.n_mpjpe(pred, target, reduce=False)
    vel = [metrics.mpjve(s.pred[r].astype(np.float64) * MM, s.target[r].astype(np.float64) * MM, reduce=False)
           for s in seqs for r in _runs(s.filled) if r.stop - r.start >= 2]
    # H36M protocol: sub-actions ('Walking 1' with 'Walking') form one row of the table
    actions = np.concatenate([[metrics.action_name(s.action)] * int(s.filled.sum()) for s in seqs])
    by_action = {a: e1[actions == a] for a in sorted(set(actions.tolist()))}
    by_action_p = {a: e2[actions == a] for a in by_action}
    table1 = metrics.per_action_errors(by_action)
    table2 = metrics.per_action_errors(by_action_p)
    return {
        "frames": int(e1.shape[0]), "sequences": len(seqs),
        "mpjpe": float(e1.mean()), "p_mpjpe": float(e2.mean()), "n_mpjpe": float(en.mean()),
        "mpjve": float(np.concatenate(vel).mean()) if vel else float("nan"),
        "pck": float(metrics.pck(pred, target)), "auc": float(metrics.auc(pred, target)),
        "mpjpe_action_mean": metrics.per_action_mean(by_action),
        "per_action": {a: {"mpjpe": table1[a], "p_mpjpe": table2[a], "frames": int(by_action[a].shape[0])}
                       for a in by_action},
        "per_joint": dict(zip(skeleton.JOINT_NAMES, _per_joint(pred, target))),
        **(root_errors(np.concatenate([s.root_pred[s.filled] for s in seqs]),
                       np.concatenate([s.root_target[s.filled] for s in seqs]))
           if all(s.root_pred is not None for s in seqs) else {}),
    }


def root_errors(root_pred: np.ndarray, root_target: np.ndarray) -> dict[str, Any]:
    """Root position error (mm) over frames whose true root is known (z > 0): mean Euclidean
    distance, mean |Δz| (depth, the hard part from 2D) and the frame count."""
    p, t = np.asarray(root_pred, np.float64), np.asarray(root_target, np.float64)
    known = np.isfinite(t).all(-1) & (t[..., 2] > 0)
    if not known.any():
        return {"root_error": None, "root_error_z": None, "root_frames": 0}
    d = (p[known] - t[known]) * MM
    return {"root_error": float(np.linalg.norm(d, axis=-1).mean()), "root_error_z": float(np.abs(d[:, 2]).mean()),
            "root_frames": int(known.sum())}


def _per_joint(pred: np.ndarray, target: np.ndarray) -> list[float]:
    """Mean error of each joint (mm), positions compared as MPJPE compares them (root-relative)."""
    return np.linalg.norm(pred - target, axis=-1).mean(axis=0).tolist()


def evaluate(checkpoint: str, split: Optional[str] = None, data_path: Optional[str] = None,
             flip: Optional[bool] = None, device: str = "cpu", s3_endpoint: str = "",
             batch_size: int = 8, max_clips: int = 1024) -> EvalResult:
    """Evaluate a fine-tuned checkpoint (path or s3:// URI).

    ``split`` defaults to 'test' on the checkpoint's data and to 'all' for ``data_path`` (a
    user's own mocap); ``flip`` defaults to the checkpoint's ``train.flip_test``.
    """
    from raypose.checkpoints import load_model

    torch.manual_seed(0)
    model, cfg = load_model(checkpoint, s3_endpoint, stage="finetune")
    split = split or ("all" if data_path else "test")
    flip = cfg.train.flip_test if flip is None else bool(flip)
    data_cfg = data_config_for(cfg, data_path, batch_size)
    seqs = predict_split(model, data_cfg, split, flip, device, max_clips)
    return EvalResult(checkpoint=str(checkpoint), split=split, flip=flip, model=cfg.model.name,
                      num_frames=cfg.data.num_frames, **score(seqs))


def format_table(result: EvalResult) -> str:
    """A printable summary: headline metrics, then MPJPE / P-MPJPE per action."""
    lines = [f"checkpoint {result.checkpoint}",
             f"model {result.model} ({result.num_frames} frames), split {result.split}, "
             f"flip {'on' if result.flip else 'off'}, {result.frames} frames in {result.sequences} sequences",
             f"MPJPE {result.mpjpe:.1f} mm | P-MPJPE {result.p_mpjpe:.1f} mm | N-MPJPE {result.n_mpjpe:.1f} mm"
             f" | MPJVE {result.mpjve:.2f} mm | PCK {result.pck:.1f} % | AUC {result.auc:.1f} %"
             f" | per-action mean MPJPE {result.mpjpe_action_mean:.1f} mm",
             *([f"root position error {result.root_error:.1f} mm (depth {result.root_error_z:.1f} mm) over "
                f"{result.root_frames} frames (camera space, trajectory head)"] if result.root_error is not None else []),
             "", f"{'action':<24}{'frames':>8}{'MPJPE':>10}{'P-MPJPE':>10}"]
    for action, row in result.per_action.items():
        lines.append(f"{action:<24}{row['frames']:>8}{row['mpjpe']:>10.1f}{row['p_mpjpe']:>10.1f}")
    return "\n".join(lines)


def write_json(result: EvalResult, path: str | Path) -> list[Path]:
    """The results as JSON, and beside it the per-action table (``<stem>_actions.png``) and the
    error of each joint (``<stem>_joints.png``); returns the files written."""
    from raypose import viz

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1))
    rows = [{"action": a, **r} for a, r in result.per_action.items()]
    title = f"{Path(result.checkpoint).name}: {result.split} split, MPJPE {result.mpjpe:.1f} mm"
    written = [path, viz.plot_table(rows, path.with_name(f"{path.stem}_actions.png"),
                                    ["action", "frames", "mpjpe", "p_mpjpe"], title=title)]
    if result.per_joint:
        written.append(viz.plot_joint_errors(result.per_joint, path.with_name(f"{path.stem}_joints.png"),
                                             title=title))
    return written


# --------------------------------------------------------------------------------------------
# real detections from calibrated cameras (Pose2Sim layout)
# --------------------------------------------------------------------------------------------

def evaluate_calibrated(model: torch.nn.Module, path: str | Path, num_frames: int, stride: int = 1,
                        flip: bool = True, batch_size: int = 256,
                        model_fps: Optional[float] = None, causal: bool = False) -> list[dict[str, Any]]:
    """Lift each camera's real 2D detections and score them against the multi-view 3D
    (``causal``: the model predicts the last frame of its window, ``data.causal``).

    ``path`` is an npz in the layout of ``../shared/data/pose2sim_demo.npz``: ``keypoints_coco17``
    (C, T, 17, 3) pixels + confidence, ``R`` (C, 3, 3) world→camera, ``t`` (C, 3) metres,
    ``image_size`` (C, 2) w×h, optionally ``K`` (C, 3, 3) (its principal points centre the 2D) and ``fps`` (the 2D is
    resampled to ``model_fps``, the rate the model was trained at, when both are known),
    ``positions_3d_h36m17`` (T, 17, 3) world metres. The reference is
    triangulated, not marker ground truth, so the numbers bound rather than measure the error.
    Returns one row per camera: MPJPE, P-MPJPE, N-MPJPE (mm) and the frame count.
    """
    from raypose.errors import RayposeDataError
    from raypose.infer import lift_sequence
    from raypose.data.detections import to_h36m

    path = Path(path)
    if not path.exists():
        raise RayposeDataError(path, "file not found")
    with np.load(path) as d:
        need = ("keypoints_coco17", "R", "t", "image_size", "positions_3d_h36m17")
        missing = [k for k in need if k not in d.files]
        if missing:
            raise RayposeDataError(path, f"missing arrays {missing} (expected {list(need)})")
        kp, rot, trans, size, world = (np.asarray(d[k], np.float64) for k in need)
        intrinsics = np.asarray(d["K"], np.float64) if "K" in d.files else None
        fps = float(d["fps"]) if "fps" in d.files else None
    if kp.ndim != 4 or kp.shape[2:] != (17, 3) or world.shape != (kp.shape[1], 17, 3):
        raise RayposeDataError(path, f"keypoints {kp.shape} / 3D {world.shape} do not match (C, T, 17, 3) / (T, 17, 3)")
    rows = []
    for cam in range(kp.shape[0]):
        pose_2d = to_h36m(kp[cam], "coco17", path)
        centre = None if intrinsics is None else intrinsics[cam, :2, 2]
        pred = lift_sequence(model, pose_2d, float(size[cam, 0]), float(size[cam, 1]), num_frames,
                             batch_size=batch_size, flip=flip, stride=stride,
                             principal_point=centre, fps=fps, model_fps=model_fps,
                             causal=causal).astype(np.float64)
        in_cam = world @ rot[cam].T + trans[cam]
        target = in_cam - in_cam[:, :1]
        ok = np.isfinite(target).all(axis=(1, 2))
        p, t = pred[ok] * MM, target[ok] * MM
        rows.append({"camera": cam, "frames": int(ok.sum()), "mpjpe": float(metrics.mpjpe(p, t)),
                     "p_mpjpe": float(metrics.p_mpjpe(p, t)), "n_mpjpe": float(metrics.n_mpjpe(p, t))})
    return rows


def mean_over_cameras(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Frame-weighted MPJPE / P-MPJPE / N-MPJPE over :func:`evaluate_calibrated`'s camera rows."""
    frames = sum(r["frames"] for r in rows)
    return {k: sum(r[k] * r["frames"] for r in rows) / frames for k in ("mpjpe", "p_mpjpe", "n_mpjpe")}
