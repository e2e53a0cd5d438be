"""2D keypoint files for inference → per-person tracks of H36M-17 pixels + confidence.

Inference starts from whatever a 2D detector wrote: an AlphaPose / COCO results JSON (one entry
per person per frame, with a track id), a VideoPose3D "custom dataset" npz, a plain (T, 17, 2|3)
npy, or a video that MediaPipe's bundled pose models detect here (every person, tracked:
:mod:`raypose.data.people`; or one person with ``single_person``). Every reader returns the same
:class:`Detections` so the lifter never cares where the 2D came from. Joints are mapped to
H36M-17 with :mod:`raypose.skeleton` mappings (derived joints are only as confident as their
least confident source); a missing detection is confidence 0, never a fake coordinate.

Run ``python -m raypose.data.detections VIDEO OUT.json`` to write MediaPipe detections in the
AlphaPose results format (useful in a separate environment, see :func:`detect_video`).
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from raypose import skeleton
from raypose.errors import RayposeDataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: What to install for the video path. mediapipe==0.10.21 is the last release bundling the
#: offline pose model; it needs numpy < 2 and protobuf < 5, which `./setup.sh --video` pins
#: (constraints-video.txt) in the same environment as Ray. A separate detector interpreter
#: (``--detector-python``) stays as the fallback for environments that must keep numpy 2.
VIDEO_EXTRA_HINT = (
    "video input needs MediaPipe (mediapipe==0.10.21), which is not installed here. Install the "
    "video extra into this environment with `./setup.sh --video` (or `pip install -c "
    "constraints-video.txt -e .[video]`: it moves numpy to 1.26 and protobuf to 4.25), or keep "
    "this environment as it is and make a detector environment: `python -m venv .venv-detect && "
    ".venv-detect/bin/pip install mediapipe==0.10.21 imageio imageio-ffmpeg`, then pass "
    "`--detector-python .venv-detect/bin/python`")

#: MediaPipe Pose's 33 landmarks, by index.
MEDIAPIPE33_NAMES: tuple[str, ...] = (
    "nose", "l_eye_inner", "l_eye", "l_eye_outer", "r_eye_inner", "r_eye", "r_eye_outer",
    "l_ear", "r_ear", "mouth_l", "mouth_r", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
    "l_wrist", "r_wrist", "l_pinky", "r_pinky", "l_index", "r_index", "l_thumb", "r_thumb",
    "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "l_heel", "r_heel",
    "l_foot_index", "r_foot_index",
)
#: COCO-17 joint k is MediaPipe landmark MEDIAPIPE33_TO_COCO17_INDEX[k].
MEDIAPIPE33_TO_COCO17_INDEX: tuple[int, ...] = tuple(
    MEDIAPIPE33_NAMES.index(n) for n in skeleton.COCO17_NAMES)


def _compose(name: str, outer: skeleton.JointMapping, index: tuple[int, ...], num_source: int
             ) -> skeleton.JointMapping:
    """``outer ∘ select(index)``: reuse the COCO → H36M derivation for any COCO superset."""
    select = np.zeros((len(index), num_source))
    select[np.arange(len(index)), index] = 1.0
    return skeleton.JointMapping(name, num_source, outer.weights @ select)


#: MediaPipe-33 → H36M-17 through the COCO-17 subset (MediaPipe ankles are H36M "feet").
MEDIAPIPE33_TO_H36M = _compose("mediapipe33", skeleton.COCO17_TO_H36M,
                               MEDIAPIPE33_TO_COCO17_INDEX, 33)
#: Halpe-26 (AlphaPose's whole-body 26) starts with the 17 COCO joints in COCO order.
HALPE26_TO_H36M = _compose("halpe26", skeleton.COCO17_TO_H36M, tuple(range(17)), 26)

LAYOUTS: dict[str, Optional[skeleton.JointMapping]] = {
    "h36m17": None,
    "coco17": skeleton.COCO17_TO_H36M,
    "halpe26": HALPE26_TO_H36M,
    "mediapipe33": MEDIAPIPE33_TO_H36M,
}


@dataclass
class Track:
    """One person: detected frame indices (sorted, unique) and H36M-17 pixels + confidence."""

    frames: np.ndarray      # (T,) int64
    keypoints: np.ndarray   # (T, 17, 3) float32, confidence 0 where missing

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class Detections:
    """Everything a 2D file says: tracks by id, and the image size / fps when it carries them."""

    tracks: dict[str, Track]
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    source_path: str = ""
    video_path: Optional[str] = None
    extra: dict = field(default_factory=dict)
    #: The joint layout the file was read in, and how it was known (given, declared, detected).
    layout: Optional[str] = None
    layout_reason: str = ""


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------

def to_h36m(points: np.ndarray, layout: str, path: object) -> np.ndarray:
    """(…, K, 2|3) pixels(+conf) in ``layout`` → (…, 17, 3) H36M-17 pixels + confidence.

    Two channels mean "all detected" (confidence 1); non-finite coordinates are missing
    (confidence 0, coordinates 0) so NaNs never reach the lifter.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim < 2 or points.shape[-1] not in (2, 3):
        raise RayposeDataError(path, f"keypoints must be (…, joints, 2|3), got shape {points.shape}")
    if layout not in LAYOUTS:
        raise RayposeDataError(path, f"unknown joint layout {layout!r}; known: {sorted(LAYOUTS)}")
    xy = points[..., :2]
    conf = points[..., 2] if points.shape[-1] == 3 else np.ones(points.shape[:-1], np.float32)
    ok = np.isfinite(xy).all(-1) & np.isfinite(conf) & (conf > 0)
    xy = np.where(ok[..., None], xy, 0.0).astype(np.float32)
    conf = np.where(ok, conf, 0.0).astype(np.float32)
    mapping = LAYOUTS[layout]
    if mapping is None:
        if points.shape[-2] != skeleton.NUM_JOINTS:
            raise RayposeDataError(path, f"h36m17 layout needs 17 joints, got shape {points.shape}")
    else:
        if points.shape[-2] != mapping.num_source:
            raise RayposeDataError(
                path, f"{layout} layout needs {mapping.num_source} joints, got shape {points.shape}")
        xy = mapping.apply(xy)
        conf = mapping.apply_confidence(conf)
    return np.concatenate([xy, conf[..., None]], axis=-1).astype(np.float32)


def _layout_for(num_joints: int, path: object, default: str = "coco17") -> str:
    by_count = {17: default, 26: "halpe26", 33: "mediapipe33"}
    if num_joints not in by_count:
        raise RayposeDataError(path, f"cannot tell the joint layout of {num_joints} joints "
                                     "(expected 17 joints: COCO-17 or H36M-17, 26 Halpe or 33 MediaPipe)")
    return by_count[num_joints]


def _with_confidence(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float32)
    return p if p.shape[-1] == 3 else np.concatenate([p, np.ones(p.shape[:-1] + (1,), np.float32)], -1)


def resolve_layout(arrays: Sequence[np.ndarray], path: object, given: Optional[str] = None,
                   declared: Optional[str] = None) -> tuple[str, str]:
    """(layout, how it was known) for the (T, K, 2|3) arrays of one file.

    Why: 17 joints may be COCO-17 or H36M-17 order, and reading one as the other gives garbage
    3D without a word. An explicit ``given`` (``--layout``) or a layout the file ``declared``
    wins; 26/33 joints are Halpe/MediaPipe by count; 17 are told apart by geometry
    (:func:`raypose.skeleton.guess_layout17`), and when that is unsure this refuses.
    """
    if given:
        return given, "given by --layout"
    if declared:
        return declared, "declared in the file"
    counts = {int(np.shape(a)[1]) for a in arrays}
    if len(counts) != 1:
        raise RayposeDataError(path, f"arrays of different joint counts {sorted(counts)} in one file")
    k = counts.pop()
    if k != skeleton.NUM_JOINTS:
        layout = _layout_for(k, path)
        return layout, f"{k} joints"
    points = np.concatenate([_with_confidence(a) for a in arrays], axis=0)
    layout, why = skeleton.guess_layout17(points)
    if layout is None:
        raise RayposeDataError(path, f"cannot tell whether the 17 joints are in COCO-17 or H36M-17 "
                                     f"order ({why}): pass --layout coco17 or --layout h36m17")
    return layout, f"detected from the joints' geometry: {why}; pass --layout to override"


def _frame_number(image_id: object, path: object) -> int:
    """AlphaPose writes image ids as frame numbers or file names ("000012.jpg")."""
    if isinstance(image_id, (int, np.integer)):
        return int(image_id)
    if isinstance(image_id, float) and image_id.is_integer():
        return int(image_id)
    digits = re.findall(r"\d+", str(image_id))
    if not digits:
        raise RayposeDataError(path, f"image_id {image_id!r} names no frame number")
    return int(digits[-1])


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------

def read_alphapose_json(path: str | Path, layout: Optional[str] = None) -> Detections:
    """AlphaPose / COCO results: ``[{image_id, keypoints: [x, y, s]*K, score, idx}]``.

    The list may be wrapped in ``{"results": [...], "width", "height", "fps"}``. Entries without
    ``idx`` form track 0. Two entries of one track in one frame keep the higher score.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RayposeDataError(path, f"cannot read JSON: {e}") from e
    meta = doc if isinstance(doc, dict) else {}
    results = doc.get("results", doc.get("annotations")) if isinstance(doc, dict) else doc
    if not isinstance(results, list):
        raise RayposeDataError(path, "expected a list of results or {'results': [...]} ")
    best: dict[str, dict[int, tuple[float, np.ndarray]]] = {}
    for n, r in enumerate(results):
        if not isinstance(r, dict) or "keypoints" not in r:
            raise RayposeDataError(path, f"result {n} has no 'keypoints'")
        kp = np.asarray(r["keypoints"], dtype=np.float32)
        if kp.size % 3:
            raise RayposeDataError(path, f"result {n}: {kp.size} keypoint values is not a multiple of 3")
        kp = kp.reshape(-1, 3)
        frame = _frame_number(r.get("image_id", n), path)
        idx = r.get("idx", 0)
        if isinstance(idx, list):  # PoseFlow can write [[id]]
            idx = np.asarray(idx).ravel()[0] if np.asarray(idx).size else 0
        tid = str(int(idx)) if isinstance(idx, (int, float, np.integer, np.floating)) else str(idx)
        score = float(r.get("score", np.nanmean(kp[:, 2])))
        held = best.setdefault(tid, {}).get(frame)
        if held is None or score > held[0]:
            best[tid][frame] = (score, kp)
    if not best:
        raise RayposeDataError(path, "no detections in the file")
    raw = {}
    for tid in sorted(best, key=lambda t: (not t.lstrip("-").isdigit(), int(t) if t.lstrip("-").isdigit() else 0, t)):
        frames = np.array(sorted(best[tid]), dtype=np.int64)
        raw[tid] = (frames, np.stack([best[tid][f][1] for f in frames]))
    lay, why = resolve_layout([k for _, k in raw.values()], path, layout, meta.get("keypoint_format"))
    tracks = {tid: Track(frames, to_h36m(kps, lay, path)) for tid, (frames, kps) in raw.items()}
    return Detections(tracks, _int_or_none(meta.get("width")), _int_or_none(meta.get("height")),
                      _float_or_none(meta.get("fps")), str(path), _video_beside(path, meta.get("video")),
                      layout=lay, layout_reason=why)


def read_videopose3d_npz(path: str | Path, layout: Optional[str] = None) -> Detections:
    """VideoPose3D custom-dataset 2D: ``positions_2d[video]['custom'][i]`` (T, K, 2|3) and
    ``metadata['video_metadata'][video] = {'w', 'h'}``; one track per video (and entry)."""
    try:
        data = np.load(path, allow_pickle=True)
        positions = data["positions_2d"].item()
        meta = data["metadata"].item() if "metadata" in data.files else {}
    except (OSError, KeyError, ValueError) as e:
        raise RayposeDataError(path, f"not a VideoPose3D 2D npz (positions_2d + metadata): {e}") from e
    if not isinstance(positions, dict) or not positions:
        raise RayposeDataError(path, "positions_2d holds no videos")
    sizes = meta.get("video_metadata", {}) if isinstance(meta, dict) else {}
    raw: dict[str, np.ndarray] = {}
    wh: set[tuple[int, int]] = set()
    for video, cams in positions.items():
        entries = cams.get("custom", next(iter(cams.values()), None)) if isinstance(cams, dict) else cams
        if entries is None:
            raise RayposeDataError(path, f"positions_2d[{video!r}] holds no arrays")
        for i, arr in enumerate(entries):
            arr = np.asarray(arr, dtype=np.float32)
            if arr.ndim != 3:
                raise RayposeDataError(path, f"positions_2d[{video!r}][{i}] has shape {arr.shape}, expected (T, K, 2|3)")
            raw[str(video) if len(entries) == 1 else f"{video}_{i}"] = arr
        if video in sizes:
            wh.add((int(sizes[video]["w"]), int(sizes[video]["h"])))
    lay, why = resolve_layout(list(raw.values()), path, layout, _vp3d_layout(meta))
    tracks = {tid: Track(np.arange(arr.shape[0], dtype=np.int64), to_h36m(arr, lay, path))
              for tid, arr in raw.items()}
    width, height = (wh.pop() if len(wh) == 1 else (None, None))
    return Detections(tracks, width, height, None, str(path), layout=lay, layout_reason=why)


def _vp3d_layout(meta: dict) -> Optional[str]:
    name = str(meta.get("layout_name", "")).lower() if isinstance(meta, dict) else ""
    if "h36m" in name:
        return "h36m17"
    if "coco" in name or "detectron" in name:
        return "coco17"
    return None


def read_npy(path: str | Path, layout: Optional[str] = None) -> Detections:
    """A plain (T, K, 2|3) array of one person; without ``layout`` a 17-joint array's order
    (COCO-17 or H36M-17) is detected from its geometry, or refused when unclear."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise RayposeDataError(path, f"cannot read npy: {e}") from e
    if arr.ndim != 3 or arr.shape[-1] not in (2, 3):
        raise RayposeDataError(path, f"expected (T, joints, 2|3), got shape {arr.shape}")
    lay, why = resolve_layout([arr], path, layout)
    return Detections({"0": Track(np.arange(arr.shape[0], dtype=np.int64), to_h36m(arr, lay, path))},
                      source_path=str(path), layout=lay, layout_reason=why)


def read_detections(path: str | Path, layout: Optional[str] = None,
                    detector_python: Optional[str] = None, **video_kw) -> Detections:
    """Dispatch on the suffix: .json, .npz, .npy, or a video (MediaPipe detection, in this
    process when mediapipe imports, else with ``detector_python`` in a subprocess).

    A video yields every person found, tracked (``max_people`` caps them); ``single_person=True``
    is MediaPipe Pose's own single-person tracker instead (one track over every frame)."""
    p = Path(path)
    if not p.exists():
        raise RayposeDataError(p, "no such file")
    suffix = p.suffix.lower()
    if suffix == ".json":
        return read_alphapose_json(p, layout)
    if suffix == ".npz":
        return read_videopose3d_npz(p, layout)
    if suffix == ".npy":
        return read_npy(p, layout)
    if suffix in VIDEO_SUFFIXES:
        if detector_python and not _has_mediapipe():
            return detect_video_subprocess(p, detector_python, **video_kw)
        return detect_video_any(p, **video_kw)
    raise RayposeDataError(p, f"unknown input type {suffix!r}: expected .json, .npz, .npy or a video "
                              f"({', '.join(VIDEO_SUFFIXES)})")


def detect_video_any(path: str | Path, single_person: bool = False, max_people: Optional[int] = None,
                     max_frames: Optional[int] = None) -> Detections:
    """Every person (:func:`raypose.data.people.detect_people`), or one with MediaPipe Pose."""
    if single_person:
        if max_people not in (None, 1):
            raise RayposeDataError(path, f"single-person detection finds one person, not max_people={max_people}")
        return detect_video(path, max_frames=max_frames)
    from raypose.data.people import detect_people

    return detect_people(path, max_people=max_people, max_frames=max_frames)


def _has_mediapipe() -> bool:
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None


def detect_video_subprocess(path: str | Path, python: str, max_frames: Optional[int] = None,
                            single_person: bool = False, max_people: Optional[int] = None) -> Detections:
    """Run :func:`main` under another interpreter (the detector environment) and read its JSON.

    Only numpy, imageio and mediapipe are needed there: this module imports nothing else of
    raypose beyond the skeleton, found through PYTHONPATH.
    """
    import os
    import subprocess
    import tempfile

    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "detections.json"
        cmd = [python, "-m", "raypose.data.detections", str(path), str(out)]
        if max_frames is not None:
            cmd += ["--max-frames", str(max_frames)]
        if max_people is not None:
            cmd += ["--max-people", str(max_people)]
        if single_person:
            cmd.append("--single-person")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RayposeDataError(path, f"detection with {python} failed: {' | '.join(tail)}")
        det = read_alphapose_json(out)
    det.source_path, det.video_path = str(path), str(path)
    return det


def _int_or_none(v) -> Optional[int]:
    return None if v is None else int(v)


def _float_or_none(v) -> Optional[float]:
    return None if v is None else float(v)


def _video_beside(path: object, name: Optional[str]) -> Optional[str]:
    if not name:
        return None
    p = Path(path).parent / str(name)
    return str(p) if p.exists() else None


# --------------------------------------------------------------------------------------------
# video
# --------------------------------------------------------------------------------------------

#: ``camera:N`` names capture device N (``/dev/videoN`` on Linux) wherever a video is read.
CAMERA_PATTERN = re.compile(r"^camera:(\d+)$")


def is_camera(path: object) -> bool:
    """True for ``camera:N``: a live capture device, read through OpenCV."""
    return bool(CAMERA_PATTERN.match(str(path)))


def _iter_camera(path: str) -> Iterator[np.ndarray]:
    """RGB frames from capture device N as it delivers them (until it stops)."""
    try:
        import cv2
    except ImportError:
        raise RayposeDataError(path, "reading a camera needs OpenCV (installed with the video "
                                     "extra: ./setup.sh --video)") from None
    device = int(CAMERA_PATTERN.match(path).group(1))
    cap = cv2.VideoCapture(device)
    if not cap.isOpened():
        raise RayposeDataError(path, f"no camera at device {device} (/dev/video{device}): "
                                     "check the device exists and this user may read it")
    yield from _capture_frames(cap)


def _capture_frames(cap) -> Iterator[np.ndarray]:
    """RGB frames of an opened ``cv2.VideoCapture`` until it stops; released at the end."""
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame[..., ::-1].copy()
    finally:
        cap.release()


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3) of a video, via imageio (ffmpeg/pyav) or OpenCV; of a live
    camera for ``camera:N``."""
    if is_camera(path):
        yield from _iter_camera(str(path))
        return
    try:
        import imageio.v3 as iio

        it = iio.imiter(path)
        first = next(it)
    except StopIteration:
        return
    except Exception as imageio_error:  # no ffmpeg/pyav plugin: try OpenCV
        try:
            import cv2
        except ImportError:
            raise RayposeDataError(path, f"cannot decode video ({imageio_error}); install imageio-ffmpeg "
                                         "(pip install imageio-ffmpeg) or opencv-python") from None
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise RayposeDataError(path, "OpenCV cannot open the video")
        yield from _capture_frames(cap)
        return
    yield np.asarray(first)[..., :3]
    for frame in it:
        yield np.asarray(frame)[..., :3]


def video_fps(path: str | Path) -> Optional[float]:
    """Frames per second from the container (or the camera), or None when no backend can tell."""
    if is_camera(path):
        try:
            import cv2

            cap = cv2.VideoCapture(int(CAMERA_PATTERN.match(str(path)).group(1)))
            fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
            cap.release()
            return float(fps) if fps > 0 else None
        except ImportError:
            return None
    try:
        import imageio.v3 as iio

        return float(iio.immeta(path)["fps"])
    except Exception:
        pass
    try:
        import cv2

        cap = cv2.VideoCapture(str(path))
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        return float(fps) if fps > 0 else None
    except Exception:
        return None


def detect_video(path: str | Path, model_complexity: int = 1, max_frames: Optional[int] = None
                 ) -> Detections:
    """One person per frame with MediaPipe Pose (``mediapipe.solutions.pose``, whose weights ship
    inside mediapipe==0.10.21 — no download). Landmark visibility is the confidence; frames
    where nobody is found are kept as missing (confidence 0), so the track has every frame.
    """
    rows: list[np.ndarray] = []
    width = height = None
    for frame in iter_video_landmarks(path, model_complexity, max_frames):
        rows.append(frame.landmarks)
        width, height = frame.width, frame.height
    if not rows:
        raise RayposeDataError(path, "the video has no frames")
    kps = np.stack(rows)
    track = Track(np.arange(len(rows), dtype=np.int64), to_h36m(kps, "mediapipe33", path))
    return Detections({"0": track}, width, height, video_fps(path), str(path), str(path),
                      extra={"mediapipe33": kps})


@dataclass
class VideoLandmarks:
    """One decoded frame's MediaPipe result: (33, 3) pixels + visibility (zeros: nobody)."""

    index: int
    width: int
    height: int
    landmarks: np.ndarray

    @property
    def h36m(self) -> Optional[np.ndarray]:
        """(17, 3) H36M-17 pixels + confidence, or None when nobody was found."""
        if not (self.landmarks[:, 2] > 0).any():
            return None
        return to_h36m(self.landmarks[None], "mediapipe33", "video frame")[0]


def iter_video_landmarks(path: str | Path, model_complexity: int = 1,
                         max_frames: Optional[int] = None) -> Iterator[VideoLandmarks]:
    """MediaPipe Pose frame by frame, as the video (or camera, ``camera:N``) delivers them:
    what online lifting consumes, and what :func:`detect_video` collects."""
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as e:
        raise RayposeDataError(path, f"{VIDEO_EXTRA_HINT} ({e})") from None
    with _native_stderr_filtered(MEDIAPIPE_HARMLESS), \
            mp_pose.Pose(static_image_mode=False, model_complexity=model_complexity) as detector:
        for n, frame in enumerate(iter_video_frames(path)):
            if max_frames is not None and n >= max_frames:
                break
            height, width = frame.shape[:2]
            result = detector.process(np.ascontiguousarray(frame))
            yield VideoLandmarks(n, width, height, _landmarks_to_array(result.pose_landmarks, width, height))


#: MediaPipe's native start-up notices, written by C++ straight to file descriptor 2 (no Python
#: logger to configure): the TF Lite delegate, absl's "before InitializeLog" notice and two
#: warnings about features the pose solution does not use. Anything else is shown.
MEDIAPIPE_HARMLESS = (
    "Created TensorFlow Lite XNNPACK delegate",
    "All log messages before absl::InitializeLog()",
    "Feedback manager requires a model with a single signature",
    "Using NORM_RECT without IMAGE_DIMENSIONS",
)


@contextmanager
def _native_stderr_filtered(harmless: tuple[str, ...]) -> Iterator[None]:
    """Capture file descriptor 2 (native libraries bypass ``sys.stderr``) and, afterwards,
    write back every line that is not one of the ``harmless`` notices — all of them when the
    block raised, so a detector failure keeps its whole native log."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = [ln for ln in lines if failed or not any(h in ln for h in harmless)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _landmarks_to_array(landmarks, width: int, height: int) -> np.ndarray:
    """MediaPipe normalised landmarks → (33, 3) pixels + visibility (zeros when none)."""
    out = np.zeros((33, 3), np.float32)
    if landmarks is None:
        return out
    for k, lm in enumerate(landmarks.landmark):
        out[k] = (lm.x * width, lm.y * height, lm.visibility)
    return out


def to_alphapose_results(detections: Detections,
                         layout_points: Optional[np.ndarray | dict[str, np.ndarray]] = None) -> dict:
    """Detections → an AlphaPose-style results document (COCO-17 keypoints when MediaPipe
    landmarks are at hand — one array for a single track, or a dict by track id — else the
    H36M-17 points with ``keypoint_format: h36m17``)."""
    results = []
    if layout_points is not None and not isinstance(layout_points, dict):
        layout_points = {tid: layout_points for tid in detections.tracks}
    coco = None if layout_points is None else {
        tid: pts[..., list(MEDIAPIPE33_TO_COCO17_INDEX), :] for tid, pts in layout_points.items()}
    for tid, tr in detections.tracks.items():
        pts = coco[tid] if coco is not None else tr.keypoints
        for i, f in enumerate(tr.frames):
            if (pts[i, :, 2] > 0).any():
                results.append({"image_id": int(f), "category_id": 1,
                                "keypoints": [round(float(v), 2) for v in pts[i].ravel()],
                                "score": round(float(pts[i, :, 2].mean()), 4),
                                "idx": int(tid) if tid.isdigit() else tid})
    return {"video": Path(detections.video_path).name if detections.video_path else None,
            "fps": detections.fps, "width": detections.width, "height": detections.height,
            "keypoint_format": "coco17" if coco is not None else "h36m17", "results": results}


def main(argv: Optional[Iterable[str]] = None) -> None:
    """``python -m raypose.data.detections VIDEO OUT.json``: detect once, lift many times."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("video")
    parser.add_argument("out")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--max-people", type=int, default=None)
    parser.add_argument("--single-person", action="store_true")
    args = parser.parse_args(None if argv is None else list(argv))
    det = detect_video_any(args.video, args.single_person, args.max_people, args.max_frames)
    doc = to_alphapose_results(det, det.extra.get("mediapipe33"))
    Path(args.out).write_text(json.dumps(doc))
    print(f"{args.out}: {len(doc['results'])} detections, {len(det.tracks)} track(s)")


if __name__ == "__main__":
    main()
