"""Detections (or a video) → root-relative 3D per person, and the files users take away.

Lifting mirrors evaluation: every frame is a clip centre, clips are gathered with edge
replication (:func:`raypose.data.clips.gather_indices`), 2D is normalised as in training
(:func:`raypose.cameras.normalize_screen`), and missing or low-confidence joints reach the model
as ``joints_missing=True`` — masked, not zeroed into fake detections at the image centre.
"""
from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch

from raypose import skeleton
from raypose.cameras import normalize_screen
from raypose.data.clips import gather_indices
from raypose.data.detections import VIDEO_SUFFIXES, Detections, Track, read_detections
from raypose.data.sources._common import resample_keypoints, resample_plan
from raypose.errors import RayposeDataError

DEFAULT_CONF_THRESHOLD = 0.2


# --------------------------------------------------------------------------------------------
# lifting
# --------------------------------------------------------------------------------------------

def prepare_2d(keypoints_2d: np.ndarray, width: float, height: float,
               conf_threshold: float = DEFAULT_CONF_THRESHOLD,
               principal_point: Optional[Sequence[float]] = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, 17, 3) pixels + conf → normalised (T, 17, 2) and ``joints_missing`` (T, 17) bool.

    Coordinates are centred on ``principal_point`` (the image centre when unknown), as training
    centres them on its cameras' principal points.

    A joint is missing when its confidence is ≤ ``conf_threshold`` or NaN, or its coordinates are
    not finite; its coordinates are set to 0 only so no NaN reaches the model — the mask is what
    tells the model to ignore it.
    """
    kp = np.asarray(keypoints_2d, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"keypoints_2d must be (T, 17, 3) pixels + confidence, got {kp.shape}")
    xy = normalize_screen(kp[..., :2], float(width), float(height), principal_point)
    conf = kp[..., 2]
    missing = ~(conf > conf_threshold) | ~np.isfinite(xy).all(-1)
    xy = np.where(missing[..., None], 0.0, xy).astype(np.float32)
    return xy, missing


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the block, then the mode it had; a ``torch.export`` program (``.pt2``) is
    inference-only and has no modes to switch."""
    try:
        was_training = model.training
        model.eval()
    except NotImplementedError:
        yield
        return
    try:
        yield
    finally:
        model.train(was_training)


def _forward(model: torch.nn.Module, pose_2d: torch.Tensor, missing: torch.Tensor, flip: bool
             ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(B, F, 17, 2) clips → (B, 17, 3) centre-frame predictions (flip-averaged on request) and,
    from a trajectory head, (B, 3) the root in the unit-focal frame (else None)."""
    if flip:
        from raypose.models import flip_average

        out = flip_average(model, pose_2d, missing)
    else:
        out = model(pose_2d, missing)
    root = out["trajectory"][:, 0] if "trajectory" in out else None
    return out["centre"][:, 0], root


#: Compute precisions for lifting (``--precision``).
INFER_PRECISIONS = ("fp32", "bf16")


def lift_sequence(model: torch.nn.Module, keypoints_2d: np.ndarray, width: float, height: float,
                  num_frames: int, batch_size: int = 256, flip: bool = True,
                  conf_threshold: float = DEFAULT_CONF_THRESHOLD, stride: int = 1,
                  device: Optional[torch.device | str] = None,
                  principal_point: Optional[Sequence[float]] = None,
                  fps: Optional[float] = None, model_fps: Optional[float] = None,
                  precision: str = "fp32", causal: bool = False) -> np.ndarray:
    """Lift one person's (T, 17, 3) pixels + confidence to (T, 17, 3) root-relative metres.

    With ``fps`` (the input's rate) and ``model_fps`` (the rate the model was trained at,
    ``data.target_fps``) both given and different, the 2D is resampled to the model's rate, lifted,
    and the 3D resampled back to the input's frames, so a window spans the time it spans in
    training whatever the footage's frame rate.

    Every frame is the centre of one ``num_frames``-frame clip (with TDS ``stride``), or its last
    frame for a ``causal`` model (``data.causal``: no future frames), padded by repeating the
    first/last frame; clips run in batches of ``batch_size`` under
    ``torch.inference_mode``. ``flip`` averages with the mirrored input (test-time flip).
    ``precision`` bf16 runs the model under bfloat16 autocast: 2.7× the fp32 frames/s on a CPU
    with AVX-512 BF16 (bench/infer.py), about a millimetre different (1.2 mm mean on the real
    Pose2Sim detections with the shipped model; tested); on a CPU without it, bf16 is emulated
    and slower.
    """
    return _lift(model, keypoints_2d, width, height, num_frames, batch_size, flip, conf_threshold,
                 stride, device, principal_point, fps, model_fps, precision, causal)[0]


def default_focal(width: float, height: float) -> float:
    """The focal length (px) assumed for footage whose lens is unknown: the long side, a 53°
    field of view across it (mid-range of the training rig's 40–75° lenses)."""
    return float(max(width, height))


def lift_with_root(model: torch.nn.Module, keypoints_2d: np.ndarray, width: float, height: float,
                   num_frames: int, focal: Optional[float] = None, **kw: Any
                   ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """:func:`lift_sequence` and, from a model with a trajectory head, the (T, 3) camera-space
    root position per frame (metres; None without the head). Depth from 2D is known only up to
    the lens: ``focal`` (px; :func:`default_focal` when unknown) turns the head's unit-focal
    depth into metres (:func:`raypose.cameras.screen_depth_to_root`)."""
    args = dict(batch_size=256, flip=True, conf_threshold=DEFAULT_CONF_THRESHOLD, stride=1, device=None,
                principal_point=None, fps=None, model_fps=None, precision="fp32", causal=False)
    unknown = set(kw) - set(args)
    if unknown:
        raise TypeError(f"lift_with_root takes no argument(s) {sorted(unknown)}")
    args.update(kw)
    poses, root = _lift(model, keypoints_2d, width, height, num_frames, **args)
    if root is None:
        return poses, None
    f = default_focal(width, height) if focal is None else float(focal)
    scale = 2.0 * f / float(width)                      # raypose.cameras.screen_focal
    root = root.copy()
    root[:, 2] *= scale
    return poses, root


def _lift(model: torch.nn.Module, keypoints_2d: np.ndarray, width: float, height: float,
          num_frames: int, batch_size: int, flip: bool, conf_threshold: float, stride: int,
          device: Optional[torch.device | str], principal_point: Optional[Sequence[float]],
          fps: Optional[float], model_fps: Optional[float], precision: str, causal: bool = False
          ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(T, 17, 3) root-relative poses and, from a trajectory head, (T, 3) unit-focal roots."""
    if precision not in INFER_PRECISIONS:
        raise ValueError(f"precision must be one of {INFER_PRECISIONS}, got {precision!r}")
    if fps and model_fps and abs(fps - model_fps) > 1e-6 and len(keypoints_2d) > 1:
        at_model_rate = resample_keypoints(np.asarray(keypoints_2d, np.float32),
                                           resample_plan(len(keypoints_2d), fps, model_fps))
        lifted, root = _lift(model, at_model_rate, width, height, num_frames, batch_size, flip,
                             conf_threshold, stride, device, principal_point, None, None, precision,
                             causal)
        back = resample_to_frames(lifted, model_fps, fps, len(keypoints_2d))
        if root is not None:
            root = resample_to_frames(root[:, None], model_fps, fps, len(keypoints_2d))[:, 0]
        return back, root
    xy, missing = prepare_2d(keypoints_2d, width, height, conf_threshold, principal_point)
    t = xy.shape[0]
    if t == 0:
        return np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32), None
    if missing.all():
        raise ValueError("every joint of every frame is missing or below the confidence threshold")
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    pose = torch.from_numpy(xy).to(device=device, dtype=dtype)
    miss = torch.from_numpy(missing).to(device)
    length = torch.tensor([t], device=device)
    out = torch.empty((t, skeleton.NUM_JOINTS, 3), dtype=torch.float32)
    roots: Optional[torch.Tensor] = None
    device_type = torch.device(device).type
    with _eval_mode(model), torch.inference_mode(), \
            torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, t, batch_size):
            centres = torch.arange(start, min(start + batch_size, t), device=device)
            idx = gather_indices(length, centres[None], num_frames, stride, causal)[0]  # (B, F)
            pred, root = _forward(model, pose[idx], miss[idx], flip)
            out[start:start + idx.shape[0]] = pred.float().cpu()
            if root is not None:
                roots = torch.empty((t, 3), dtype=torch.float32) if roots is None else roots
                roots[start:start + idx.shape[0]] = root.float().cpu()
    out = out - out[:, skeleton.ROOT:skeleton.ROOT + 1]
    return out.numpy(), None if roots is None else roots.numpy()


def resample_to_frames(poses: np.ndarray, fps: float, target_fps: float, num_frames: int) -> np.ndarray:
    """(T, J, 3) poses at ``fps`` → ``num_frames`` frames at ``target_fps`` (linear; frames past
    the end repeat the last pose)."""
    i0, i1, w = resample_plan(len(poses), fps, target_fps)
    out = poses[i0] * (1 - w)[:, None, None] + poses[i1] * w[:, None, None]
    if len(out) < num_frames:
        out = np.concatenate([out, np.repeat(out[-1:], num_frames - len(out), 0)])
    return out[:num_frames].astype(np.float32)


def fill_short_gaps(keypoints_2d: np.ndarray, max_gap: int,
                    conf_threshold: float = DEFAULT_CONF_THRESHOLD) -> np.ndarray:
    """(T, 17, 3) pixels + confidence with each joint's runs of ≤ ``max_gap`` missing frames
    filled: linearly between the detections around the run, held from the one neighbour at a
    track's ends. Filled joints take the lower of their neighbours' confidences.

    Why: detectors drop joints for a few frames (occlusion, motion blur) and whole frames; a
    lifter then sees a body with holes, which a window model never saw in training (the shipped
    model drew collapsed or exploded poses there). Longer gaps stay missing.
    """
    kp = np.array(keypoints_2d, dtype=np.float32)
    if max_gap <= 0 or len(kp) < 2:
        return kp
    seen = (kp[..., 2] > conf_threshold) & np.isfinite(kp[..., :2]).all(-1)
    t_all = np.arange(len(kp))
    for j in range(kp.shape[1]):
        ok = seen[:, j]
        if ok.all() or not ok.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], (~ok).astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):      # missing run [a, b)
            if b - a > max_gap:
                continue
            left, right = a - 1, b                       # the detections around the run
            if left < 0:
                kp[a:b, j] = kp[right, j]
            elif right >= len(kp):
                kp[a:b, j] = kp[left, j]
            else:
                w = ((t_all[a:b] - left) / (right - left))[:, None]
                kp[a:b, j, :2] = kp[left, j, :2] * (1 - w) + kp[right, j, :2] * w
                kp[a:b, j, 2] = min(kp[left, j, 2], kp[right, j, 2])
    return kp


def longest_tracks(tracks: Mapping[str, Track], n: int) -> dict[str, Track]:
    """The ``n`` tracks with the most detected frames, ids and order kept (``--max-people``)."""
    keep = set(sorted(tracks, key=lambda tid: -tracks[tid].num_frames)[:n])
    return {tid: tr for tid, tr in tracks.items() if tid in keep}


def contiguous(track: Track) -> tuple[np.ndarray, np.ndarray]:
    """A track over its whole frame range: frames between detections become all-missing rows
    (confidence 0), so windows keep real time spacing and the model sees the gaps as masked."""
    frames = np.asarray(track.frames, dtype=np.int64)
    if frames.size == 0:
        return frames, track.keypoints
    full = np.arange(frames[0], frames[-1] + 1, dtype=np.int64)
    kp = np.zeros((full.size, skeleton.NUM_JOINTS, 3), np.float32)
    kp[frames - frames[0]] = track.keypoints
    return full, kp


def lift_tracks(model: torch.nn.Module, tracks: Mapping[Any, Track | tuple[np.ndarray, np.ndarray]],
                width: float, height: float, num_frames: int, fill_gaps: bool = True,
                max_gap: int = 0, roots: Optional[dict[str, np.ndarray]] = None,
                focal: Optional[float] = None, **kw) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Lift every person: ``{id: (frames (T,), poses (T, 17, 3))}``; with a ``roots`` dict and a
    model with a trajectory head, each track's (T, 3) camera-space root is put in it
    (:func:`lift_with_root`, ``focal`` px).

    With ``fill_gaps`` a track covers its first..last frame (undetected frames lifted from
    temporal context); otherwise only the detected frames, back to back. ``max_gap`` > 0 fills
    each joint's runs of up to that many missing frames first (:func:`fill_short_gaps`).
    """
    results = {}
    for tid, tr in tracks.items():
        if not isinstance(tr, Track):
            tr = Track(np.asarray(tr[0], dtype=np.int64), np.asarray(tr[1], dtype=np.float32))
        frames, kp = contiguous(tr) if fill_gaps else (tr.frames, tr.keypoints)
        kp = fill_short_gaps(kp, max_gap, kw.get("conf_threshold", DEFAULT_CONF_THRESHOLD))
        if roots is None:
            results[str(tid)] = (frames, lift_sequence(model, kp, width, height, num_frames, **kw))
            continue
        poses, root = lift_with_root(model, kp, width, height, num_frames, focal=focal, **kw)
        results[str(tid)] = (frames, poses)
        if root is not None:
            roots[str(tid)] = root
    return results


# --------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------

def write_npz(path: str | Path, results: Mapping[str, tuple[np.ndarray, np.ndarray]],
              roots: Optional[Mapping[str, np.ndarray]] = None) -> Path:
    """``track_<id>`` (T, 17, 3) metres root-relative (camera axes), ``frames_<id>`` (T,) and,
    from a trajectory head, ``root_<id>`` (T, 3) the root's camera-space position (metres)."""
    arrays: dict[str, np.ndarray] = {"joint_names": np.array(skeleton.JOINT_NAMES)}
    for tid, (frames, poses) in results.items():
        arrays[f"track_{tid}"] = np.asarray(poses, np.float32)
        arrays[f"frames_{tid}"] = np.asarray(frames, np.int64)
        if roots and tid in roots:
            arrays[f"root_{tid}"] = np.asarray(roots[tid], np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def write_json(path: str | Path, results: Mapping[str, tuple[np.ndarray, np.ndarray]],
               fps: Optional[float] = None, decimals: int = 4,
               roots: Optional[Mapping[str, np.ndarray]] = None) -> Path:
    """The same content as :func:`write_npz`, as JSON (millimetre precision at 4 decimals);
    a track's ``root_3d`` is its camera-space root (trajectory heads)."""
    doc = {
        "units": "metres", "frame": "camera (x right, y down, z forward), root-relative",
        "joint_names": list(skeleton.JOINT_NAMES), "parents": list(skeleton.PARENTS), "fps": fps,
        "tracks": {tid: {"frames": [int(f) for f in frames],
                         "joints_3d": np.round(np.asarray(poses, np.float64), decimals).tolist(),
                         **({"root_3d": np.round(np.asarray(roots[tid], np.float64), decimals).tolist()}
                            if roots and tid in roots else {})}
                   for tid, (frames, poses) in results.items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


#: Camera frame (y down, z forward) → BVH's usual Y-up frame: a 180° turn about x.
_CAMERA_TO_YUP = np.diag([1.0, -1.0, -1.0])


def write_2d(path: str | Path, det: Detections) -> Path:
    """The 2D tracks as an AlphaPose results JSON (COCO-17 where MediaPipe landmarks are at
    hand), which ``--input`` reads back: detect once, lift many times."""
    from raypose.data.detections import to_alphapose_results

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_alphapose_results(det, det.extra.get("mediapipe33"))))
    return path


def write_bvh(path: str | Path, poses: np.ndarray, fps: float = 30.0, scale: float = 100.0,
              root_positions: Optional[np.ndarray] = None) -> Path:
    """BVH of a (T, 17, 3) sequence with a position channel triple on every joint.

    Why positions and no rotations: a 17-point skeleton does not determine joint twist, and one
    rotation cannot map a branching joint's rest offsets (pelvis → hips + spine, thorax → neck +
    shoulders) onto predicted ones whose angles differ from the rest pose. Per-joint
    ``Xposition Yposition Zposition`` (valid BVH) reproduce the positions exactly instead:
    each joint's channels are its translation from its parent (no rotations anywhere), the
    root's are its position (``root_positions`` (T, 3) or 0 for root-relative poses).
    OFFSETs are the mean bone vectors, so the rest pose is the average pose. Readers that treat
    translation channels as replacing the OFFSET (Blender, MotionBuilder) reproduce the input;
    axes are Y up (camera y down / z forward turned 180° about x); units are ``scale`` × metres
    (centimetres by default).
    """
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"poses must be (T, 17, 3), got {poses.shape}")
    pts = poses @ _CAMERA_TO_YUP.T * scale
    root = (np.zeros((len(pts), 3)) if root_positions is None
            else np.asarray(root_positions, np.float64) @ _CAMERA_TO_YUP.T * scale)
    local = pts.copy()
    parents = np.array(skeleton.PARENTS)
    local[:, 1:] = pts[:, 1:] - pts[:, parents[1:]]
    local[:, 0] = root
    offsets = local[:, 1:].mean(0) if len(local) else np.zeros((skeleton.NUM_JOINTS - 1, 3))
    offsets = np.vstack([np.zeros(3), offsets])
    children = {j: [c for c, p in enumerate(skeleton.PARENTS) if p == j] for j in range(skeleton.NUM_JOINTS)}

    lines: list[str] = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if j == skeleton.ROOT else "JOINT"
        lines.append(f"{pad}{kind} {skeleton.JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offsets[j][0]:.6f} {offsets[j][1]:.6f} {offsets[j][2]:.6f}")
        lines.append(f"{pad}  CHANNELS 3 Xposition Yposition Zposition")
        if children[j]:
            for c in children[j]:
                emit(c, depth + 1)
        else:  # a short end segment continuing the bone, for viewers that draw bones to End Sites
            end = offsets[j] * 0.2 if np.linalg.norm(offsets[j]) > 0 else np.array([0.0, 1.0, 0.0])
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    emit(skeleton.ROOT, 0)
    order = _dfs_order()
    lines += ["MOTION", f"Frames: {len(local)}", f"Frame Time: {1.0 / float(fps):.8f}"]
    for frame in local:
        lines.append(" ".join(f"{v:.5f}" for v in frame[order].ravel()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _dfs_order() -> list[int]:
    """Joint order of the BVH hierarchy (depth first), which is also the channel order."""
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c, p in enumerate(skeleton.PARENTS):
            if p == j:
                visit(c)

    visit(skeleton.ROOT)
    return order


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------

def add_infer_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = parser
    p.add_argument("--input", required=True, help="2D keypoints (.json AlphaPose/COCO, .npz "
                   "VideoPose3D, .npy (T,17,2|3)) or a video (MediaPipe detection)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint directory or URI from training, 'latest' (the newest "
                        "fine-tuning run under --storage-path), or a .pt2 program (default: the "
                        "shipped model)")
    p.add_argument("--storage-path", default="",
                   help="where --checkpoint latest looks (train.storage_path; default ~/ray_results)")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("W", "H"), default=None,
                   help="image width and height in pixels, where the input does not carry them")
    p.add_argument("--layout", default=None, help="joint layout of the 2D (coco17, h36m17, "
                   "halpe26, mediapipe33); when omitted: declared by the file, else by joint count, "
                   "and 17 joints (COCO-17 or H36M-17) detected from their geometry, or refused "
                   "when that is unclear")
    p.add_argument("--max-people", type=int, default=None, metavar="N",
                   help="keep the N people seen longest (default: every person: from a video, "
                        "everyone tracked over at least 10 frames)")
    p.add_argument("--single-person", action="store_true",
                   help="video input: MediaPipe Pose's single-person tracker (one track over every "
                        "frame, following whoever it locks on to) instead of every person")
    p.add_argument("--detector-python", default=None, help="python of an environment with "
                   "mediapipe==0.10.21, used for video input when mediapipe is not importable here")
    p.add_argument("--save-2d", default=None, metavar="JSON",
                   help="also write the 2D tracks that were lifted (AlphaPose results JSON; from a "
                        "video, the detections — lift them again later without detecting)")
    p.add_argument("--video", default=None, help="video to draw the 2D overlay on (for --render)")
    p.add_argument("--out", required=True, help="output .npz (track_<id>, frames_<id>)")
    p.add_argument("--json", nargs="?", const="", default=None,
                   help="also write JSON (default: --out with .json)")
    p.add_argument("--bvh", nargs="?", const="", default=None,
                   help="also write BVH per track (default: --out stem + _<id>.bvh)")
    p.add_argument("--render", default=None, help="render the 3D (and 2D overlay) to .mp4/.gif")
    p.add_argument("--contact-sheet", default=None, help="PNG contact sheet of the 3D poses")
    p.add_argument("--no-flip", action="store_true", help="disable test-time flip averaging")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--precision", choices=INFER_PRECISIONS, default="fp32",
                   help="bf16: bfloat16 autocast, 2.7x faster on CPUs with AVX-512 BF16 or AMX and "
                        "on GPUs (bench/infer.py), about 1 mm apart; slower where emulated")
    p.add_argument("--conf-threshold", type=float, default=DEFAULT_CONF_THRESHOLD)
    p.add_argument("--device", default="cpu")
    p.add_argument("--fps", type=float, default=None, help="frame rate, where the input lacks it")
    p.add_argument("--focal", type=float, default=None, metavar="PX",
                   help="focal length in pixels, for the camera-space root of a model with a "
                        "trajectory head (default: the image's long side, a 53° lens)")
    p.add_argument("--fill-gaps", type=float, default=1.0, metavar="SECONDS",
                   help="fill each joint's detection gaps up to this long before lifting "
                        "(linear; held at a track's ends; --online holds the last detection); "
                        "0 = lift the gaps as missing joints")
    p.add_argument("--online", action="store_true",
                   help="lift frames as they arrive (a video or camera:N read as a stream, or a "
                        "2D file replayed frame by frame); a causal checkpoint (data.causal) answers "
                        "each frame at once, a centred one half a window late; prints the latency")
    p.add_argument("--stream-out", default=None, metavar="PATH",
                   help="with --online: also write each frame's 3D as one JSON line the moment it "
                        "is lifted ('-' = stdout)")
    p.add_argument("--max-frames", type=int, default=None,
                   help="with --online: stop after this many frames (for a camera)")
    return p


class Lifter(NamedTuple):
    """A lifting model and the window it was trained on (frames, TDS stride, frame rate, and
    whether the predicted frame is the window's last: ``data.causal``)."""

    model: torch.nn.Module
    num_frames: int
    stride: int
    fps: Optional[float]      # data.target_fps; None where training kept each source's rate
    causal: bool = False


#: The model shipped in the package (configs/wild.yaml on all shared real mocap; see its README).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "wild_lifter"


def load_checkpoint(uri: Optional[str] = None, device: str = "cpu", storage_path: str = "") -> Lifter:
    """The lifter of a fine-tuning checkpoint (no training package needed), or of a program
    from ``raypose export --format program`` (``.pt2``); the shipped model
    (:data:`SHIPPED_CHECKPOINT`) when ``uri`` is None; the newest fine-tuning run under
    ``storage_path`` for ``'latest'``."""
    from raypose.checkpoints import latest_lifter, load_model, load_program

    if uri == "latest":
        uri = latest_lifter(storage_path)
        print(f"checkpoint: {uri} (the latest)", flush=True)

    if uri is None:
        if not (SHIPPED_CHECKPOINT / "model.pt").is_file():
            raise RayposeDataError(SHIPPED_CHECKPOINT, "the shipped model is missing from this "
                                   "installation: pass --checkpoint")
        uri = str(SHIPPED_CHECKPOINT)
    model, cfg = load_program(uri) if str(uri).endswith(".pt2") else load_model(uri)
    num_frames, stride = int(cfg.data.num_frames), int(getattr(cfg.data, "stride", 1))
    model = model.to(device)  # load_model returns eval mode; an exported program is inference-only
    with torch.inference_mode():  # a pretraining checkpoint reconstructs 2D; it does not lift
        probe = model(torch.zeros(1, num_frames, skeleton.NUM_JOINTS, 2, device=device),
                      torch.zeros(1, num_frames, skeleton.NUM_JOINTS, dtype=torch.bool, device=device))
    if "centre" not in probe:
        raise RayposeDataError(uri, "is not a lifting checkpoint (no 'centre' output): "
                                    "pass a fine-tuning checkpoint")
    return Lifter(model, num_frames, stride, float(cfg.data.target_fps) or None,
                  bool(getattr(cfg.data, "causal", False)))


def _sibling(out: Path, value: str, suffix: str, tid: Optional[str] = None) -> Path:
    if value:
        p = Path(value)
        return p if tid is None else p.with_name(f"{p.stem}_{tid}{p.suffix}")
    return out.with_name(f"{out.stem}{'' if tid is None else '_' + tid}{suffix}")


def _decodable(video: str) -> Optional[str]:
    """The video found beside the detections, if this environment can decode it (else warn and
    draw the 2D without the picture)."""
    import warnings

    from raypose.data.detections import iter_video_frames

    try:
        next(iter(iter_video_frames(video)), None)
        return video
    except RayposeDataError as e:
        warnings.warn(f"rendering without the video: {e}")
        return None


def _lifter_for(args: argparse.Namespace, model: Optional[torch.nn.Module],
                num_frames: Optional[int], stride: int) -> Lifter:
    """The lifter handed in (tests, notebooks), else the one ``--checkpoint`` names."""
    if model is not None:
        if num_frames is None:
            raise ValueError("pass num_frames with model")
        return Lifter(model, num_frames, stride, None)
    if args.checkpoint is None:
        print(f"checkpoint: the shipped model ({SHIPPED_CHECKPOINT})", flush=True)
    return load_checkpoint(args.checkpoint, args.device, getattr(args, "storage_path", ""))


def infer_command(args: argparse.Namespace, model: Optional[torch.nn.Module] = None,
                  num_frames: Optional[int] = None, stride: int = 1) -> dict[str, Any]:
    """Read → lift → write (→ render). ``model``/``num_frames`` bypass ``--checkpoint``.
    With ``--online`` frames are lifted as they arrive (:mod:`raypose.online`)."""
    extra: dict[str, Any] = {}
    roots: dict[str, np.ndarray] = {}
    focal = getattr(args, "focal", None)
    max_people, single = getattr(args, "max_people", None), getattr(args, "single_person", False)
    if max_people is not None and max_people < 1:
        raise RayposeDataError(args.input, f"--max-people must be at least 1, got {max_people}")
    is_video = Path(args.input).suffix.lower() in VIDEO_SUFFIXES
    if single and not is_video:
        raise RayposeDataError(args.input, "--single-person applies to video input; a detections "
                                           "file already holds its tracks (--max-people 1 keeps the longest)")
    if getattr(args, "online", False):
        from raypose.online import lift_online

        lifter = _lifter_for(args, model, num_frames, stride)
        det, results, fps, extra["latency"] = lift_online(args, lifter)
        width, height = det.width, det.height
    else:
        video_kw = {"max_people": max_people, "single_person": single} if is_video else {}
        det = read_detections(args.input, args.layout, detector_python=args.detector_python, **video_kw)
        if max_people is not None and not is_video:
            det.tracks = longest_tracks(det.tracks, max_people)
        if det.layout:
            print(f"layout: {det.layout} ({det.layout_reason})", flush=True)
        width, height = det.width, det.height
        if args.image_size:
            width, height = args.image_size
        if not width or not height:
            raise RayposeDataError(args.input, "the file does not carry the image size: pass --image-size W H")
        lifter = _lifter_for(args, model, num_frames, stride)
        fps = args.fps or det.fps
        if fps is None and lifter.fps:
            raise RayposeDataError(args.input, "the file does not carry its frame rate: pass --fps "
                                   "(windows are resampled to the model's rate)")
        max_gap = int(round(args.fill_gaps * (fps or 30.0)))
        results = lift_tracks(lifter.model, det.tracks, width, height, lifter.num_frames,
                              stride=lifter.stride, flip=not args.no_flip, batch_size=args.batch_size,
                              conf_threshold=args.conf_threshold, device=args.device, fps=fps,
                              model_fps=lifter.fps, max_gap=max_gap, precision=args.precision,
                              causal=lifter.causal, roots=roots, focal=focal)
    if roots:
        print(f"trajectory: camera-space root per frame (focal {focal or default_focal(width, height):.0f} px"
              f"{'' if focal else ', assumed: pass --focal'})", flush=True)
    fps = fps or 30.0
    out = Path(args.out)
    written = {"npz": [str(write_npz(out, results, roots))]}
    if getattr(args, "save_2d", None):
        written["2d"] = [str(write_2d(args.save_2d, det))]
    if args.json is not None:
        written["json"] = [str(write_json(_sibling(out, args.json, ".json"), results, fps, roots=roots))]
    if args.bvh is not None:  # with a trajectory head the root travels (camera's axes, Y up)
        written["bvh"] = [str(write_bvh(_sibling(out, args.bvh, ".bvh", tid), poses, fps,
                                        root_positions=roots.get(tid)))
                          for tid, (_, poses) in results.items()]
    video = args.video or det.video_path
    if args.render and video and not args.video:
        video = _decodable(video)
    if args.render:
        from raypose import viz

        written["render"] = []
        for tid, (frames, poses) in results.items():
            target = args.render if len(results) == 1 else str(_sibling(Path(args.render), args.render, "", tid))
            _, kp2d = contiguous(det.tracks[tid])
            written["render"].append(str(viz.render_sequence(
                poses, target, fps=fps, overlay_video=video, keypoints_2d=kp2d, frames=frames)))
    if args.contact_sheet:
        from raypose import viz

        written["contact_sheet"] = [
            str(viz.contact_sheet(poses, args.contact_sheet if len(results) == 1 else
                                  _sibling(Path(args.contact_sheet), args.contact_sheet, "", tid)))
            for tid, (_, poses) in results.items()]
    for tid, (frames, _) in results.items():
        detected = det.tracks[tid].num_frames
        print(f"track {tid}: {len(frames)} frames lifted ({detected} detected, frames "
              f"{frames[0] if len(frames) else '-'}..{frames[-1] if len(frames) else '-'})")
    for kind, paths in written.items():
        for p in paths:
            print(f"wrote {kind}: {p}")
    return {"results": results, "written": written, "width": width, "height": height, **extra}


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = add_infer_arguments(argparse.ArgumentParser(
        prog="raypose infer", description="2D detections or a video → 3D poses per person"))
    return infer_command(parser.parse_args(argv))
