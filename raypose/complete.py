"""3D pose completion (MPM §3.3.2, "from incomplete 3D pose"): partial 3D with missing joints or
frames (NaN) → the whole sequence, observed joints kept exactly.

Why the frame handling: an MPM stage I model learnt masked-3D modeling on *root-relative camera-
frame* metres (the virtual rig's cameras, y down, z forward, from every azimuth), while a user's
partial mocap is world-space and usually Z (or Y) up. So each frame is made root-relative (the
pelvis; when it is missing, the midpoint of the hips, which is how H36M-17 defines it; else the
pelvis track interpolated over time), turned into a level camera's axes, completed window by
window, and turned back. Wholly missing frames are *dropped* from the encoder, as temporal
masking dropped them in training, and the 3D decoder fills them.

Baselines (same module, so the bench and the command share them): linear interpolation over
time per joint, and the nearest training pose matched on the observed joints after root and
heading alignment.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch

from raypose import skeleton
from raypose.errors import RayposeDataError

J = skeleton.NUM_JOINTS
PELVIS, R_HIP, L_HIP, HEAD = 0, 1, 4, 10

#: world Z up → a level camera's axes (x right, y down, z forward): y_cam = −z, z_cam = y.
_Z_UP_TO_MODEL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
#: an adult's hip → knee → ankle is well under this (metres); longer means another unit
MAX_LEG_M = 1.6

#: Where a shipped completion model would live (none ships yet: --checkpoint is required).
SHIPPED_COMPLETER = Path(__file__).resolve().parent / "assets" / "mpm_completer"


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------

class Completer(NamedTuple):
    """An MPM stage I model and the window it was trained on."""

    model: torch.nn.Module
    num_frames: int
    fps: Optional[float]      # data.target_fps; None where training kept each source's rate


def load_completer(uri: Optional[str] = None, device: str = "cpu") -> Completer:
    """The MPM stage I model at ``uri`` (the shipped completer when None), refused clearly when
    it cannot complete 3D: another model, a fine-tuning (lifting) checkpoint, or a pretraining
    run that never trained the masked-3D decoder (``loss.rec_3d`` 0)."""
    from raypose.checkpoints import load_model, load_state

    if uri is None:
        if not (SHIPPED_COMPLETER / "model.pt").is_file():
            raise RayposeDataError(SHIPPED_COMPLETER, "no completion model ships with this raypose: "
                                   "pass --checkpoint, an MPM pretraining checkpoint (make one with "
                                   "raypose pretrain --config configs/mpm_complete.yaml)")
        uri = str(SHIPPED_COMPLETER)
    _, meta = load_state(uri)
    cfg, stage = meta["config"], meta.get("stage")
    if cfg.model.name != "mpm" or stage != "pretrain":
        raise RayposeDataError(uri, f"is a {stage!r} checkpoint of {cfg.model.name!r}; 3D completion "
                               "needs an MPM stage I (pretraining) checkpoint, whose masked-3D decoder "
                               "fills joints (raypose pretrain --config configs/mpm_complete.yaml)")
    if not cfg.loss.rec_3d > 0:
        raise RayposeDataError(uri, "is an MPM pretraining checkpoint trained without masked-3D "
                               "modeling (loss.rec_3d = 0): its 3D decoder never learnt to complete poses")
    model, _ = load_model(uri)
    if not hasattr(model, "complete_3d"):
        raise RayposeDataError(uri, "the model has no 3D decoder (complete_3d)")
    return Completer(model.to(device).eval(), int(cfg.data.num_frames), float(cfg.data.target_fps) or None)


# --------------------------------------------------------------------------------------------
# frames and roots
# --------------------------------------------------------------------------------------------

def missing_joints(poses: np.ndarray) -> np.ndarray:
    """(T, 17) bool: a joint with any non-finite coordinate is missing."""
    return ~np.isfinite(poses).all(-1)


def check_poses(poses: Any, source: object = "input") -> np.ndarray:
    """``poses`` as (T, 17, 3) float64, or an error naming ``source`` and the problem."""
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (J, 3):
        raise RayposeDataError(source, f"expected 3D poses of shape (frames, 17, 3) in the H36M-17 "
                                       f"joint order, got {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise RayposeDataError(source, "has no frames")
    if missing_joints(arr).all():
        raise RayposeDataError(source, "every joint of every frame is missing (NaN): nothing to complete from")
    return arr


def interpolate_over_time(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(T, …) values, (T,) known → linear in time between known rows, edges held."""
    t = np.arange(len(values))
    flat = values.reshape(len(values), -1)
    out = np.empty_like(flat)
    for c in range(flat.shape[1]):
        out[:, c] = np.interp(t, t[known], flat[known, c])
    return out.reshape(values.shape)


def reference_root(poses: np.ndarray, source: object = "input") -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) the frame's root and (T,) whether it came from the frame itself.

    The pelvis where observed; else the midpoint of both hips (H36M-17's pelvis is exactly that);
    else interpolated over time from frames that have one. No such frame at all is an error: the
    model works root-relative and cannot place a body it has no root for.
    """
    missing = missing_joints(poses)
    root = poses[:, PELVIS].copy()
    own = ~missing[:, PELVIS]
    hips = missing[:, PELVIS] & ~missing[:, R_HIP] & ~missing[:, L_HIP]
    root[hips] = 0.5 * (poses[hips, R_HIP] + poses[hips, L_HIP])
    own |= hips
    if not own.any():
        raise RayposeDataError(source, "the pelvis (joint 0) and at least one hip are missing in every "
                                       "frame: completion works relative to the pelvis and cannot place "
                                       "the body without it")
    if not own.all():
        root = interpolate_over_time(np.where(own[:, None], root, 0.0), own)
    return root, own


def detect_up_axis(poses: np.ndarray, source: object = "input") -> str:
    """'z' or 'y': the axis the pelvis → head direction mostly points along, upwards."""
    ok = ~missing_joints(poses)[:, [PELVIS, HEAD]].any(1)
    if not ok.any():
        raise RayposeDataError(source, "no frame has both the pelvis and the head, so the up axis "
                                       "cannot be told: pass --up-axis z or y")
    try:
        return skeleton.up_axis_of(poses[ok, HEAD] - poses[ok, PELVIS])
    except ValueError as e:
        raise RayposeDataError(source, f"{e}; pass --up-axis z or y") from None


def to_z_up(poses: np.ndarray, up_axis: str) -> np.ndarray:
    return poses if up_axis == "z" else skeleton.y_up_to_z_up(poses)


def from_z_up(poses: np.ndarray, up_axis: str) -> np.ndarray:
    return poses if up_axis == "z" else skeleton.z_up_to_y_up(poses)


def check_units(poses: np.ndarray, source: object = "input") -> None:
    """Refuse 3D that is clearly not metres (a leg of 90 'units' is centimetres)."""
    legs = []
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        leg = (np.linalg.norm(poses[:, hip] - poses[:, knee], axis=-1)
               + np.linalg.norm(poses[:, knee] - poses[:, ankle], axis=-1))
        legs.append(leg[np.isfinite(leg)])
    leg = np.concatenate(legs)
    if leg.size and float(np.median(leg)) > MAX_LEG_M:
        guess = "centimetres" if np.median(leg) < MAX_LEG_M * 60 else "millimetres"
        raise RayposeDataError(source, f"a leg measures {np.median(leg):.1f} units; expected metres "
                                       f"(is it in {guess}? pass --units cm or mm)")


# --------------------------------------------------------------------------------------------
# resampling with gaps
# --------------------------------------------------------------------------------------------

def resample_with_gaps(poses: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """(T, 17, 3) at ``fps`` → ``target_fps``, linear; an in-between value next to a missing one
    is missing (a frame that lands exactly on a source frame keeps it)."""
    from raypose.data.sources._common import resample_plan

    i0, i1, w = resample_plan(len(poses), fps, target_fps)
    ww = w[:, None, None]
    with np.errstate(invalid="ignore"):
        mixed = poses[i0] * (1 - ww) + poses[i1] * ww
    return np.where(ww == 0, poses[i0], np.where(ww == 1, poses[i1], mixed))


# --------------------------------------------------------------------------------------------
# completion
# --------------------------------------------------------------------------------------------

class Completion(NamedTuple):
    poses: np.ndarray          # (T, 17, 3) the input with every missing joint filled
    filled: np.ndarray         # (T, 17) bool: joints that were missing
    fallback_frames: int       # frames too deep in a gap for any window: interpolated instead


def _windows(length: int, num_frames: int, hop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred windows every ``hop`` frames (edge-replicated): (W, F) indices, (W, F) in-range,
    (F,) blending weight peaked at the window's centre (where the model sees both sides)."""
    half = num_frames // 2
    centres = np.arange(0, length, hop)
    if centres[-1] != length - 1:
        centres = np.append(centres, length - 1)
    raw = centres[:, None] - half + np.arange(num_frames)[None]
    weight = 1.0 - np.abs(np.arange(num_frames) - half) / (half + 1.0)
    return np.clip(raw, 0, length - 1), (raw >= 0) & (raw < length), weight


@torch.no_grad()
def _complete_model_frame(model: torch.nn.Module, rel: np.ndarray, joints_missing: np.ndarray,
                          num_frames: int, hop: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Root-relative model-frame poses → (T, 17, 3) blended predictions, (T,) covered by a window."""
    t = len(rel)
    param = next(model.parameters())
    idx, inside, weight = _windows(t, num_frames, hop)
    frame_missing = joints_missing.all(1)
    visible = (~frame_missing[idx]).sum(1)
    acc = np.zeros((t, J, 3))
    wsum = np.zeros(t)
    pose = torch.as_tensor(np.nan_to_num(rel), dtype=param.dtype, device=param.device)
    jm = torch.as_tensor(joints_missing, device=param.device)
    fm = torch.as_tensor(frame_missing, device=param.device)
    for v in np.unique(visible):
        if v == 0:          # a window wholly inside a gap sees nothing
            continue
        group = np.flatnonzero(visible == v)
        for s in range(0, len(group), batch_size):
            sel = group[s:s + batch_size]
            ix = torch.as_tensor(idx[sel], device=param.device)
            out = model.complete_3d(pose[ix], jm[ix], fm[ix]).float().cpu().numpy()
            w = inside[sel] * weight[None]
            np.add.at(acc, idx[sel].ravel(), (out * w[..., None, None]).reshape(-1, J, 3))
            np.add.at(wsum, idx[sel].ravel(), w.ravel())
    covered = wsum > 0
    acc[covered] /= wsum[covered, None, None]
    return acc, covered


def complete_sequence(completer: Completer, poses: np.ndarray, fps: Optional[float] = None,
                      up_axis: str = "z", hop: Optional[int] = None, batch_size: int = 256,
                      source: object = "input") -> Completion:
    """Fill every NaN joint of one (T, 17, 3) metre sequence (``up_axis`` up) with the model.

    With ``fps`` and the model's training rate both known and different, the sequence is
    completed at the model's rate (so a window spans the time it spanned in training) and
    resampled back; observed joints are returned exactly as given in every case. Frames deeper
    in a gap than half a window have no window that sees anything: they are interpolated over
    time between completed frames and counted in ``fallback_frames`` (a warning says so).
    """
    poses = check_poses(poses, source)
    missing = missing_joints(poses)
    if not missing.any():
        return Completion(poses.copy(), missing, 0)
    model_fps = completer.fps
    if fps and model_fps and abs(fps - model_fps) > 1e-6 and len(poses) > 1:
        from raypose.infer import resample_to_frames

        at_rate = resample_with_gaps(poses, fps, model_fps)
        if missing_joints(at_rate).all():
            raise RayposeDataError(source, f"no frame survives resampling to {model_fps:g} fps")
        inner = complete_sequence(completer, at_rate, None, up_axis, hop, batch_size, source)
        back = resample_to_frames(inner.poses.astype(np.float32), model_fps, fps, len(poses))
        out = np.where(missing[..., None], back.astype(np.float64), poses)
        return Completion(out, missing, inner.fallback_frames)

    z_up = to_z_up(poses, up_axis)
    root, _ = reference_root(z_up, source)
    rel = (z_up - root[:, None]) @ _Z_UP_TO_MODEL.T
    jm = missing.copy()
    partial = ~missing.all(1)
    # the pelvis of a root-relative pose is 0 by definition wherever the frame has its own root
    own = partial & (~missing[:, PELVIS] | (~missing[:, R_HIP] & ~missing[:, L_HIP]))
    rel[own, PELVIS] = 0.0
    jm[own, PELVIS] = False
    f = completer.num_frames
    pred, covered = _complete_model_frame(completer.model, rel, jm, f, hop or max(1, f // 4), batch_size)
    fallback = int((~covered).sum())
    if fallback:
        warnings.warn(f"{source}: {fallback} frame(s) lie deeper in a gap than half the model's "
                      f"{f}-frame window; they were interpolated over time between completed frames")
        pred = interpolate_over_time(pred, covered)
    pred[:, PELVIS] = 0.0
    world = from_z_up(pred @ _Z_UP_TO_MODEL + root[:, None], up_axis)
    return Completion(np.where(missing[..., None], world, poses), missing, fallback)


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------

def interpolate_missing(poses: np.ndarray) -> np.ndarray:
    """Baseline: each joint linear in time between the frames where it is observed, held at the
    ends. A joint never observed stays NaN (there is nothing to interpolate)."""
    poses = np.asarray(poses, np.float64)
    missing = missing_joints(poses)
    out = poses.copy()
    for j in range(J):
        known = ~missing[:, j]
        if known.any() and not known.all():
            out[:, j] = interpolate_over_time(np.where(known[:, None], poses[:, j], 0.0), known)
    return out


class NearestPose:
    """Baseline: every partial frame takes its missing joints from the training pose closest on
    the observed joints, after both are made root-relative and the bank pose is turned about the
    vertical axis to fit best (the heading is free; closed form per candidate). Frames with no
    observed joint other than the root have nothing to match on and stay NaN.

    ``bank`` (N, 17, 3) is root-relative metres, Z up.
    """

    def __init__(self, bank: np.ndarray, chunk: int = 256):
        self.bank = torch.as_tensor(np.asarray(bank, np.float32))
        self.chunk = chunk
        b = self.bank
        self._xy = b[..., :2].reshape(len(b), -1)                                  # (N, 34)
        self._yx = torch.stack([b[..., 1], -b[..., 0]], -1).reshape(len(b), -1)     # for the cross term
        self._z = b[..., 2]                                                        # (N, 17)
        self._sq = (b ** 2).sum(-1)                                                 # (N, 17)

    @classmethod
    def from_sequences(cls, sequences: Sequence[np.ndarray], step: int = 1) -> "NearestPose":
        """A bank from world-space Z-up training sequences (complete frames only, every ``step``)."""
        poses = np.concatenate([np.asarray(s)[::step] for s in sequences]).astype(np.float64)
        poses = poses[np.isfinite(poses).all((1, 2))]
        return cls(poses - poses[:, PELVIS:PELVIS + 1])

    def fill(self, poses: np.ndarray) -> np.ndarray:
        """(T, 17, 3) Z-up metres with NaN joints → the same with them filled (observed kept)."""
        poses = np.asarray(poses, np.float64)
        missing = missing_joints(poses)
        root, _ = reference_root(poses)
        rel = np.nan_to_num(poses - root[:, None])
        obs = ~missing
        obs[:, PELVIS] = False             # 0 in both after root alignment: says nothing
        out = poses.copy()
        todo = np.flatnonzero(missing.any(1) & obs.any(1))
        for s in range(0, len(todo), self.chunk):
            rows = todo[s:s + self.chunk]
            q = torch.as_tensor(rel[rows], dtype=torch.float32) * torch.as_tensor(obs[rows, :, None])
            m = torch.as_tensor(obs[rows], dtype=torch.float32)
            dot = q[..., :2].reshape(len(rows), -1) @ self._xy.T                     # Σ q·b (horizontal)
            cross = q[..., :2].reshape(len(rows), -1) @ self._yx.T                  # Σ (qx·by − qy·bx)
            vert = q[..., 2] @ self._z.T
            cost = m @ self._sq.T - 2 * torch.sqrt(dot ** 2 + cross ** 2) - 2 * vert
            best = cost.argmin(1)
            theta = torch.atan2(-cross[torch.arange(len(rows)), best], dot[torch.arange(len(rows)), best])
            b = self.bank[best].double().numpy()
            c, sn = np.cos(theta.double().numpy()), np.sin(theta.double().numpy())
            turned = b.copy()
            turned[..., 0] = c[:, None] * b[..., 0] - sn[:, None] * b[..., 1]
            turned[..., 1] = sn[:, None] * b[..., 0] + c[:, None] * b[..., 1]
            filled = turned + root[rows, None]
            out[rows] = np.where(missing[rows, :, None], filled, poses[rows])
        return out


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

class Partial(NamedTuple):
    poses: np.ndarray        # (T, 17, 3) in the file's units and axes
    fps: Optional[float]


def _fps_of(data: Mapping[str, Any], *keys: str) -> Optional[float]:
    if "fps" not in data:
        return None
    value = data["fps"]
    value = value.item() if isinstance(value, np.ndarray) and value.dtype == object else value
    for k in keys:
        if isinstance(value, Mapping):
            value = value.get(k)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def read_partial(path: str | Path) -> dict[str, Partial]:
    """Sequences of a partial-3D file, by id: a ``.npy`` (T, 17, 3); an ``.npz`` holding one
    such array, several ``track_<id>`` arrays (``raypose infer``'s and this command's output), or
    a VideoPose3D-layout ``positions_3d[subject][action]`` (id ``subject.action``), with an
    optional ``fps``; or a ``.bvh`` (read as the ``bvh`` data source reads it: metres, Z up)."""
    path = Path(path)
    if not path.is_file():
        raise RayposeDataError(path, "input file not found")
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        from raypose.data.sources.bvh import bvh_to_h36m

        poses, fps = bvh_to_h36m(path)
        return {path.stem: Partial(poses, fps)}
    try:
        loaded = np.load(path, allow_pickle=True)
    except Exception as e:
        raise RayposeDataError(path, f"not a readable .npy/.npz file ({type(e).__name__}: {e})") from None
    if suffix == ".npy" or isinstance(loaded, np.ndarray):
        return {"0": Partial(loaded, None)}
    data = {k: loaded[k] for k in loaded.files}
    if "positions_3d" in data and data["positions_3d"].dtype == object:
        tree = data["positions_3d"].item()
        if not isinstance(tree, Mapping):
            raise RayposeDataError(path, "positions_3d is an object but not a {subject: {action: array}} tree")
        return {f"{s}.{a}": Partial(arr, _fps_of(data, s, a))
                for s, actions in tree.items() for a, arr in actions.items()}
    tracks = {k[len("track_"):]: v for k, v in data.items() if k.startswith("track_")}
    if tracks:
        return {tid: Partial(v, _fps_of(data)) for tid, v in tracks.items()}
    arrays = {k: v for k, v in data.items() if v.dtype != object and v.ndim == 3}
    if len(arrays) != 1:
        raise RayposeDataError(path, f"expected one (frames, 17, 3) array, track_<id> arrays or a "
                                     f"positions_3d tree; found keys {sorted(data)}")
    return {"0": Partial(next(iter(arrays.values())), _fps_of(data))}


def write_npz(path: str | Path, results: Mapping[str, Completion], fps: Optional[float],
              units: str, up_axis: str) -> Path:
    """``track_<id>`` (T, 17, 3) completed (the input's units and axes, not root-relative),
    ``frames_<id>`` (T,), ``filled_<id>`` (T, 17) which joints were filled, like ``raypose infer``."""
    arrays: dict[str, Any] = {"joint_names": np.array(skeleton.JOINT_NAMES), "units": np.array(units),
                              "up_axis": np.array(up_axis)}
    if fps:
        arrays["fps"] = np.array(float(fps))
    for tid, c in results.items():
        arrays[f"track_{tid}"] = c.poses.astype(np.float32)
        arrays[f"frames_{tid}"] = np.arange(len(c.poses), dtype=np.int64)
        arrays[f"filled_{tid}"] = c.filled
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def write_bvh(path: str | Path, poses_m: np.ndarray, fps: float, up_axis: str) -> Path:
    """A completed world-space sequence (metres) as BVH: Y up, centimetres, the root travelling."""
    from raypose.infer import write_bvh as write_positions_bvh

    cam = to_z_up(poses_m, up_axis) @ _Z_UP_TO_MODEL.T
    root = cam[:, PELVIS]
    return write_positions_bvh(path, cam - root[:, None], fps, root_positions=root)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------

def add_complete_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--input", default=None, help="partial 3D: .npy (T,17,3), .npz (one array, "
                   "track_<id> arrays or positions_3d[subject][action]) or .bvh; missing joints "
                   "and frames are NaN. Without it: the demo on the embedded mocap")
    p.add_argument("--out", default=None, help="output .npz (track_<id>, frames_<id>, filled_<id>) "
                   "or .bvh (one file per sequence)")
    p.add_argument("--checkpoint", default=None, help="MPM pretraining (stage I) checkpoint "
                   "directory or s3:// URI, for --method model (no completion model ships yet)")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="model: the MPM checkpoint's masked-3D decoder; interpolate: each joint "
                        "linear in time between its observations (no model; on held-out mocap it "
                        "beats the MPM model trained at this repository's CPU budget, "
                        "bench/completion.py). Default: model with --checkpoint, else interpolate")
    p.add_argument("--fps", type=float, default=None, help="frame rate, where the file lacks it")
    p.add_argument("--units", choices=sorted(UNITS), default="m", help="units of the input (default m)")
    p.add_argument("--up-axis", choices=("auto", "z", "y"), default="auto",
                   help="world up axis of the input (default: told from the pelvis → head direction)")
    p.add_argument("--hop", type=int, default=None, help="frames between window centres "
                   "(default: a quarter window)")
    p.add_argument("--device", default="cpu")
    return p


#: --method choices.
METHODS = ("model", "interpolate")


def chosen_method(args: argparse.Namespace) -> str:
    """--method, or its default (model when a checkpoint is given), printed either way."""
    method = args.method or ("model" if args.checkpoint else "interpolate")
    if method == "interpolate" and args.checkpoint:
        raise RayposeDataError(args.checkpoint, "--method interpolate uses no checkpoint: drop "
                               "--checkpoint, or pass --method model")
    print(f"method: {'the MPM model' if method == 'model' else 'linear interpolation over time'}"
          f"{'' if args.method else ' (the default ' + ('with' if args.checkpoint else 'without') + ' --checkpoint)'}",
          flush=True)
    return method


def interpolate_sequence(poses: np.ndarray, source: object = "input") -> Completion:
    """:func:`interpolate_missing` as a completion; a joint never observed cannot be filled."""
    poses = check_poses(poses, source)
    missing = missing_joints(poses)
    never = [skeleton.JOINT_NAMES[j] for j in range(J) if missing[:, j].all()]
    if never:
        raise RayposeDataError(source, f"joints {never} are never observed: interpolation has nothing "
                               "to fill them from (use --method model with an MPM checkpoint)")
    return Completion(interpolate_missing(poses), missing, 0)


def complete_file(args: argparse.Namespace, completer: Optional[Completer] = None) -> dict[str, Any]:
    """Read → complete each sequence → write; returns the completions and written paths."""
    method = "model" if completer is not None else chosen_method(args)
    if completer is None and method == "model":
        if args.checkpoint is None:
            print(f"checkpoint: the shipped completion model ({SHIPPED_COMPLETER})", flush=True)
        completer = load_completer(args.checkpoint, args.device)
    if not args.out:
        raise RayposeDataError(args.input, "pass --out FILE.npz or FILE.bvh for the completed 3D")
    out = Path(args.out)
    if out.suffix.lower() not in (".npz", ".bvh"):
        raise RayposeDataError(out, "--out must end in .npz or .bvh")
    sequences = read_partial(args.input)
    scale = UNITS[args.units]
    results: dict[str, Completion] = {}
    axes: dict[str, str] = {}
    fps_used: Optional[float] = None
    for sid, seq in sequences.items():
        where = f"{args.input} [{sid}]" if len(sequences) > 1 else args.input
        poses = check_poses(seq.poses, where) * scale
        check_units(poses, where)
        up = detect_up_axis(poses, where) if args.up_axis == "auto" else args.up_axis
        fps = args.fps or seq.fps
        if completer is None:
            done = interpolate_sequence(poses, where)
        else:
            if fps is None and completer.fps:
                raise RayposeDataError(where, "the file does not carry its frame rate: pass --fps "
                                       f"(windows are resampled to the model's {completer.fps:g} fps)")
            done = complete_sequence(completer, poses, fps, up, args.hop, source=where)
        results[sid] = Completion(done.poses / scale, done.filled, done.fallback_frames)
        axes[sid], fps_used = up, fps
        print(f"sequence {sid}: {len(poses)} frames, up {up}, {int(done.filled.sum())} joints filled "
              f"({int(done.filled.all(1).sum())} whole frames)", flush=True)
    written: list[str] = []
    if out.suffix.lower() == ".bvh":
        for sid, c in results.items():
            target = out if len(results) == 1 else out.with_name(f"{out.stem}_{sid}{out.suffix}")
            written.append(str(write_bvh(target, c.poses * scale, fps_used or 30.0, axes[sid])))
    else:
        up = next(iter(axes.values())) if len(set(axes.values())) == 1 else "per sequence"
        written.append(str(write_npz(out, results, fps_used, args.units, up)))
    for p in written:
        print(f"wrote: {p}")
    return {"results": results, "written": written}


def hide_demo(poses: np.ndarray, fps: float, seed: int = 0) -> np.ndarray:
    """The demo's occlusions: an arm or a leg hidden for one second in every two, and a 10-frame
    gap every 50 frames (what a marker set losing a limb and dropping frames looks like)."""
    from raypose.skeleton import anatomy_groups

    rng = np.random.default_rng(seed)
    out = np.array(poses, np.float64)
    limbs = anatomy_groups("limb")
    block = int(round(2 * fps))
    for start in range(0, len(out), block):
        limb = list(limbs[rng.integers(len(limbs))])
        out[start:start + block // 2, limb] = np.nan
    for start in range(block // 4, len(out), 50):
        out[start:start + 10] = np.nan
    return out


def demo(completer: Optional[Completer], out: Optional[str] = None) -> dict[str, Any]:
    """No --input: hide limbs and frames in an embedded mocap sequence, complete it with the
    model (when there is one) and with linear interpolation, and print the errors on the hidden
    joints."""
    from raypose.data.sources.mocap import read_mocap

    asset = Path(__file__).resolve().parent / "assets" / "mocap_small.npz"
    rec = read_mocap(asset, (completer.fps if completer else None) or 50.0, subjects=["climb_b"])[0]
    truth = rec.positions_3d.astype(np.float64)
    partial = hide_demo(truth, rec.fps)
    hidden = missing_joints(partial)
    print(f"demo: {rec.subject}/{rec.action} from the embedded mocap ({asset.name}), {len(truth)} frames "
          f"at {rec.fps:g} fps; hidden: an arm or leg for 1 s in every 2 s and 10-frame gaps "
          f"({hidden.mean() * 100:.0f} % of joints)", flush=True)
    interpolated = interpolate_sequence(partial, asset)
    errors = {"interpolation": hidden_mpjpe(interpolated.poses, truth, hidden)}
    if completer is None:
        done = interpolated
        print(f"MPJPE on the hidden joints: linear interpolation {errors['interpolation']:.1f} mm "
              "(pass --checkpoint with an MPM pretraining checkpoint to compare its model)")
    else:
        done = complete_sequence(completer, partial, rec.fps, "z", source=asset)
        errors["model"] = hidden_mpjpe(done.poses, truth, hidden)
        print(f"MPJPE on the hidden joints: model {errors['model']:.1f} mm, linear interpolation "
              f"{errors['interpolation']:.1f} mm (bench/completion.py measures a person held out of "
              "the model's training)")
    written = []
    if out:
        written.append(str(write_npz(out, {"0": done}, rec.fps, "m", "z")) if not out.endswith(".bvh")
                       else str(write_bvh(out, done.poses, rec.fps, "z")))
        print(f"wrote: {written[-1]}")
    return {"errors": errors, "written": written}


def hidden_mpjpe(pred: np.ndarray, truth: np.ndarray, hidden: np.ndarray) -> float:
    """Mean joint error (mm) over the hidden joints only (observed ones would flatter a method)."""
    err = np.linalg.norm(np.asarray(pred, np.float64) - truth, axis=-1)[hidden]
    return float(np.mean(err) * 1000)
