"""Every person in a video: detect all people per frame, track them, one :class:`Track` each.

MediaPipe 0.10.21 ships the two legacy pose models (``pose_detection.tflite``, a person
detector, and ``pose_landmark_full.tflite``, 33 landmarks per person) but only wires them into
the single-person ``mp.solutions.pose``. Its Tasks ``PoseLandmarker`` runs the same two models
for up to ``num_poses`` people, yet wants a ``.task`` bundle whose models carry input
normalisation metadata. :func:`pose_task_bundle` writes that metadata (MediaPipe's own metadata
writer, the legacy graphs' value ranges) and zips the two shipped models in memory — nothing is
downloaded.

The detector sees the frame letterboxed to 224 × 224, where a standing person in a wide frame is
a few dozen pixels tall and is often missed. So each frame is cut into overlapping square tiles
of the short side (:func:`square_tiles`), one landmarker per tile in video mode (each keeps its
people from frame to frame), the tiles' poses are mapped back to the frame, duplicates of one
person seen by two tiles are dropped (:func:`suppress_duplicates`) and the people are linked
across frames by keypoint-box IoU (:func:`link_tracks`), keeping an id through short gaps.
:func:`compare_tracks` scores tracks against reference detections (ids matched per track).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from raypose.errors import RayposeDataError

#: Value ranges of the legacy graphs' image-to-tensor steps, as (mean, std) per channel:
#: the detector takes [-1, 1], the landmark model [0, 1].
DETECTOR_NORM = (127.5, 127.5)
LANDMARKS_NORM = (0.0, 255.0)
#: People one tile's landmarker follows at most (the Tasks graph's ``num_poses``).
POSES_PER_TILE = 4
#: Landmarks at or above this visibility span a pose's box (all landmarks when fewer than 4).
BOX_VISIBILITY = 0.5


@dataclass(frozen=True)
class Tile:
    """A square window of the frame: top-left corner and side in pixels."""

    x0: int
    y0: int
    side: int


@dataclass
class PeopleOptions:
    """How people are found and followed (defaults measured on the Sports2D demo video)."""

    max_people: Optional[int] = None   # keep the N longest tracks; None: every track found
    min_detection_confidence: float = 0.5
    max_gap: int = 15                  # frames a track may go unseen and keep its id
    min_iou: float = 0.3               # box overlap that links a pose to a track
    max_shift: float = 1.0             # else centre distance (box sides) that still links
    min_frames: int = 10               # shorter tracks are dropped (passers-by, false alarms)
    tile_overlap: float = 0.5


# --------------------------------------------------------------------------------------------
# the model bundle
# --------------------------------------------------------------------------------------------

def _mediapipe_modules(path: object) -> Path:
    try:
        import mediapipe
    except ImportError as e:
        from raypose.data.detections import VIDEO_EXTRA_HINT

        raise RayposeDataError(path, f"{VIDEO_EXTRA_HINT} ({e})") from None
    return Path(mediapipe.__file__).resolve().parent / "modules"


@functools.lru_cache(maxsize=1)
def pose_task_bundle(path: object = "mediapipe") -> bytes:
    """A PoseLandmarker ``.task`` bundle (zip) made from the models the wheel ships.

    Why: the Tasks API is MediaPipe's only multi-person pose pipeline, and its models must say
    how to normalise the input image; the legacy files do not, so the metadata is added here.
    """
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer as mw
    from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils as bundle

    modules = _mediapipe_modules(path)
    sources = {"pose_detector.tflite": (modules / "pose_detection" / "pose_detection.tflite", DETECTOR_NORM),
               "pose_landmarks_detector.tflite": (modules / "pose_landmark" / "pose_landmark_full.tflite",
                                                  LANDMARKS_NORM)}
    models = {}
    for name, (source, (mean, std)) in sources.items():
        if not source.is_file():
            raise RayposeDataError(source, "missing from the mediapipe wheel: multi-person video "
                                           "detection needs mediapipe==0.10.21")
        writer = mw.MetadataWriter.create(bytearray(source.read_bytes()))
        models[name], _ = writer.add_general_info(name).add_image_input([mean], [std]).populate()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pose_landmarker.task"
        bundle.create_model_asset_bundle({k: bytes(v) for k, v in models.items()}, str(out))
        return out.read_bytes()


def _landmarker(num_poses: int, min_confidence: float):
    """One video-mode PoseLandmarker on the in-memory bundle."""
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode

    options = PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_buffer=pose_task_bundle()),
        running_mode=RunningMode.VIDEO, num_poses=num_poses,
        min_pose_detection_confidence=min_confidence)
    return PoseLandmarker.create_from_options(options)


# --------------------------------------------------------------------------------------------
# per frame: tiles → poses → one pose per person
# --------------------------------------------------------------------------------------------

def square_tiles(width: int, height: int, overlap: float = 0.5) -> list[Tile]:
    """Squares of the short side along the long side, neighbours sharing ``overlap`` of a side.

    Why: the detector letterboxes its input to a square, so a wide frame shrinks people by the
    long side; a square tile of the short side loses nothing to letterboxing, and with half a
    side of overlap anyone narrower than half the short side is whole in some tile.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    side, long = min(width, height), max(width, height)
    count = 1 + math.ceil((long - side) / (side * (1 - overlap)))
    starts = np.linspace(0, long - side, count).round().astype(int)
    return [Tile(int(s), 0, side) if width >= height else Tile(0, int(s), side) for s in starts]


def pose_box(pose: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of a (K, 3) pose's visible landmarks (all of them when few are)."""
    visible = pose[:, 2] >= BOX_VISIBILITY
    xy = pose[visible, :2] if visible.sum() >= 4 else pose[:, :2]
    return np.concatenate([xy.min(0), xy.max(0)])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _edge_margin(pose: np.ndarray, tile: Tile) -> float:
    """How far a pose's box stays inside its tile (negative: it sticks out), in tile sides.
    Why: a person cut by a tile's edge is landmarked worse than in a tile that holds them."""
    x0, y0, x1, y1 = pose_box(pose)
    return min(x0 - tile.x0, y0 - tile.y0, tile.x0 + tile.side - x1, tile.y0 + tile.side - y1) / tile.side


def _mirror_index() -> np.ndarray:
    """MediaPipe-33 landmark k's left/right counterpart (the nose is its own)."""
    from raypose.data.detections import MEDIAPIPE33_NAMES

    def other(name: str) -> str:
        for a, b in (("l_", "r_"), ("r_", "l_")):
            if name.startswith(a):
                return b + name[2:]
        return {"mouth_l": "mouth_r", "mouth_r": "mouth_l"}.get(name, name)

    return np.array([MEDIAPIPE33_NAMES.index(other(n)) for n in MEDIAPIPE33_NAMES])


MIRROR33 = _mirror_index()


def same_person(a: np.ndarray, b: np.ndarray, tolerance: float = 0.1,
                mirror_index: np.ndarray = MIRROR33) -> bool:
    """Two (K, 3) poses are one person seen twice when their landmarks nearly coincide:
    median distance under ``tolerance`` of the larger box's long side, either way round
    (two tiles' landmarkers may disagree on which side is left; ``mirror_index`` gives each
    joint's counterpart). Box IoU alone would also merge two people standing close; their
    landmarks differ."""
    size = max(np.ptp(pose_box(a).reshape(2, 2), axis=0).max(), np.ptp(pose_box(b).reshape(2, 2), axis=0).max())
    median = min(np.median(np.linalg.norm(a[:, :2] - b[order, :2], axis=-1))
                 for order in (slice(None), mirror_index))
    return bool(median < tolerance * max(size, 1.0))


def containment(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box ``a`` (x0, y0, x1, y1) that lies inside box ``b``."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return float(w * h / area) if area > 0 else 0.0


def suppress_duplicates(poses: Sequence[np.ndarray], priority: Sequence[float],
                        max_containment: float = 0.7, mirror_index: np.ndarray = MIRROR33
                        ) -> list[np.ndarray]:
    """Keep one pose per person.

    A pose whose box lies mostly (``max_containment``) inside a larger pose's box is dropped
    first: a tile that sees a person partly (cut by its edge, or mid-flip) makes a smaller,
    worse pose of them. Then, highest ``priority`` first, any pose that is :func:`same_person`
    as one already kept goes.
    """
    boxes = [pose_box(p) for p in poses]
    area = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    whole = [i for i in range(len(poses))
             if not any(area[j] > area[i] and containment(boxes[i], boxes[j]) >= max_containment
                        for j in range(len(poses)))]
    kept: list[np.ndarray] = []
    for i in sorted(whole, key=lambda i: -priority[i]):
        if not any(same_person(poses[i], k, mirror_index=mirror_index) for k in kept):
            kept.append(poses[i])
    return kept


def _tile_poses(result, tile: Tile) -> list[np.ndarray]:
    """A landmarker result on a tile → (33, 3) frame pixels + visibility per person."""
    return [np.array([(lm.x * tile.side + tile.x0, lm.y * tile.side + tile.y0, lm.visibility)
                      for lm in landmarks], np.float32)
            for landmarks in result.pose_landmarks]


def iter_people_frames(frames: Iterable[np.ndarray], fps: float, options: PeopleOptions,
                       path: object = "video") -> Iterator[tuple[list[np.ndarray], tuple[int, int]]]:
    """Every person in each frame as the frames arrive: the (33, 3) poses and (width, height).

    Online lifting consumes this directly; :func:`detect_people_frames` collects it.
    """
    import mediapipe as mp

    tiles: list[Tile] = []
    landmarkers: list = []
    size = (0, 0)
    timestamp_ms = -1
    try:
        for n, frame in enumerate(frames):
            if not tiles:
                size = (frame.shape[1], frame.shape[0])
                tiles = square_tiles(*size, overlap=options.tile_overlap)
                per_tile = POSES_PER_TILE if options.max_people is None else min(POSES_PER_TILE, options.max_people)
                landmarkers = [_landmarker(per_tile, options.min_detection_confidence) for _ in tiles]
            # video mode wants strictly increasing milliseconds, also above 1,000 fps
            timestamp_ms = max(int(round(n * 1000.0 / fps)), timestamp_ms + 1)
            poses, priority = [], []
            for tile, landmarker in zip(tiles, landmarkers):
                crop = np.ascontiguousarray(frame[tile.y0:tile.y0 + tile.side, tile.x0:tile.x0 + tile.side, :3])
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=crop)
                for pose in _tile_poses(landmarker.detect_for_video(image, timestamp_ms), tile):
                    poses.append(pose)
                    priority.append(_edge_margin(pose, tile) + 0.01 * float(pose[:, 2].mean()))
            yield suppress_duplicates(poses, priority), size
    finally:
        for landmarker in landmarkers:
            landmarker.close()


def detect_people_frames(frames: Iterable[np.ndarray], fps: float, options: PeopleOptions,
                         path: object = "video") -> tuple[list[list[np.ndarray]], tuple[int, int]]:
    """Every person in every frame: a list per frame of (33, 3) poses, and (width, height)."""
    per_frame: list[list[np.ndarray]] = []
    size = (0, 0)
    for poses, size in iter_people_frames(frames, fps, options, path):
        per_frame.append(poses)
    if not per_frame:
        raise RayposeDataError(path, "the video has no frames")
    return per_frame, size


# --------------------------------------------------------------------------------------------
# across frames: tracks
# --------------------------------------------------------------------------------------------

@dataclass
class _OpenTrack:
    frames: list[int]
    poses: list[np.ndarray]


def _centre_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two boxes' centres in units of the larger box's long side."""
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1.0)
    return float(np.linalg.norm((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2) / size)


def _greedy(scores: Sequence[tuple[tuple, int, int]], taken_t: set, taken_p: set
            ) -> list[tuple[int, int]]:
    """Best score first (scores compare as tuples), each track and pose at most once."""
    pairs = []
    for _, ti, pi in sorted(scores, reverse=True):
        if ti not in taken_t and pi not in taken_p:
            taken_t.add(ti), taken_p.add(pi)
            pairs.append((ti, pi))
    return pairs


class TrackLinker:
    """Poses frame by frame → track indices, as the frames arrive (see :func:`link_tracks`).

    Greedy association against each track's last pose: first by keypoint-box IoU (at least
    ``min_iou``), then the tracks and poses left over by centre distance (at most
    ``max_shift`` box sides) — a person who moved fast or came back after missed frames (a flip,
    an occlusion) keeps their id. A track unseen for more than ``max_gap`` frames is closed, so
    its id is not handed to someone who walks in much later. In both steps a track seen in at
    least ``confirmed`` frames chooses before younger ones, so a passing duplicate or false
    alarm does not take over a person's id.
    """

    def __init__(self, max_gap: int = 15, min_iou: float = 0.3, max_shift: float = 1.0,
                 confirmed: int = 10):
        self.max_gap, self.min_iou, self.max_shift, self.confirmed = max_gap, min_iou, max_shift, confirmed
        self.tracks: list[_OpenTrack] = []
        self.frame = -1

    def update(self, poses: Sequence[np.ndarray]) -> list[tuple[int, np.ndarray]]:
        """The next frame's poses → ``(track index, pose)`` for each (new tracks get new indices)."""
        self.frame = f = self.frame + 1
        alive = [(i, t) for i, t in enumerate(self.tracks) if f - t.frames[-1] <= self.max_gap + 1]
        last = [pose_box(t.poses[-1]) for _, t in alive]
        boxes = [pose_box(p) for p in poses]
        taken_t: set = set()
        taken_p: set = set()
        sure = [len(t.frames) >= self.confirmed for _, t in alive]
        overlap = [((sure[ti], iou), ti, pi) for ti, a in enumerate(last) for pi, b in enumerate(boxes)
                   for iou in [box_iou(a, b)] if iou >= self.min_iou]
        pairs = _greedy(overlap, taken_t, taken_p)
        near = [((sure[ti], -shift), ti, pi) for ti, a in enumerate(last) for pi, b in enumerate(boxes)
                for shift in [_centre_shift(a, b)] if shift <= self.max_shift]
        pairs += _greedy(near, taken_t, taken_p)
        out = []
        for ti, pi in pairs:
            index, track = alive[ti]
            track.frames.append(f)
            track.poses.append(poses[pi])
            out.append((index, poses[pi]))
        for pi, p in enumerate(poses):
            if pi not in taken_p:
                self.tracks.append(_OpenTrack([f], [p]))
                out.append((len(self.tracks) - 1, p))
        return out

    def seen(self, index: int) -> int:
        """Frames track ``index`` was seen in so far."""
        return len(self.tracks[index].frames)


def link_tracks(per_frame: Sequence[Sequence[np.ndarray]], max_gap: int = 15, min_iou: float = 0.3,
                max_shift: float = 1.0, confirmed: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """Poses per frame → tracks ``(frames (T,), poses (T, K, 3))`` in order of first appearance
    (:class:`TrackLinker` over the whole video)."""
    linker = TrackLinker(max_gap, min_iou, max_shift, confirmed)
    for poses in per_frame:
        linker.update(poses)
    return [(np.asarray(t.frames, np.int64), np.stack(t.poses).astype(np.float32)) for t in linker.tracks]


def select_tracks(tracks: Sequence[tuple[np.ndarray, np.ndarray]], min_frames: int,
                  max_people: Optional[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Drop tracks seen in fewer than ``min_frames`` frames, keep the ``max_people`` seen
    longest, and return them in order of first appearance (their ids)."""
    kept = [t for t in tracks if len(t[0]) >= min_frames]
    if max_people is not None:
        kept = sorted(kept, key=lambda t: -len(t[0]))[:max_people]
    return sorted(kept, key=lambda t: int(t[0][0]))


def detect_people(path: str | Path, max_people: Optional[int] = None, max_frames: Optional[int] = None,
                  options: Optional[PeopleOptions] = None):
    """Every person in a video → :class:`~raypose.data.detections.Detections`, one H36M-17
    track per person (ids "0", "1", … by first appearance) and their MediaPipe-33 landmarks in
    ``extra['mediapipe33']`` (by id)."""
    from itertools import islice

    from raypose.data import detections as D

    if max_people is not None and max_people < 1:
        raise RayposeDataError(path, f"max_people must be at least 1 (or None for everyone), got {max_people}")
    _mediapipe_modules(path)
    options = options or PeopleOptions()
    if max_people is not None:
        options = replace(options, max_people=max_people)
    fps = D.video_fps(path)
    frames = D.iter_video_frames(path)
    if max_frames is not None:
        frames = islice(frames, max_frames)
    with D._native_stderr_filtered(D.MEDIAPIPE_HARMLESS + TASKS_HARMLESS):
        per_frame, (width, height) = detect_people_frames(frames, fps or 30.0, options, path)
    tracks = select_tracks(link_tracks(per_frame, options.max_gap, options.min_iou, options.max_shift,
                                       options.min_frames),
                           options.min_frames, options.max_people)
    if not tracks:
        raise RayposeDataError(path, f"nobody was tracked over at least {options.min_frames} of its "
                                     f"{len(per_frame)} frames (MediaPipe found no person, or only "
                                     "briefly); --single-person lifts whatever one-person detection gives")
    out = {str(i): D.Track(frames, D.to_h36m(poses, "mediapipe33", path)) for i, (frames, poses) in enumerate(tracks)}
    landmarks = {str(i): poses for i, (_, poses) in enumerate(tracks)}
    return D.Detections(out, width, height, fps, str(path), str(path),
                        extra={"mediapipe33": landmarks, "num_frames": len(per_frame)})


#: The Tasks API's start-up notices on a machine without a GPU (it probes EGL first).
TASKS_HARMLESS = ("GPU suport is not available", "gl_context_egl", "Unable to initialize EGL",
                  "WARNING: All log messages before absl::InitializeLog()")


# --------------------------------------------------------------------------------------------
# agreement with reference tracks
# --------------------------------------------------------------------------------------------

def _frame_distance(ours: np.ndarray, theirs: np.ndarray, min_conf: float) -> float:
    """Mean pixel distance over the joints both sides detected (NaN when fewer than 4)."""
    both = (ours[:, 2] >= min_conf) & (theirs[:, 2] >= min_conf)
    if both.sum() < 4:
        return float("nan")
    return float(np.linalg.norm(ours[both, :2] - theirs[both, :2], axis=-1).mean())


def _by_frame(track) -> dict[int, np.ndarray]:
    return {int(f): k for f, k in zip(track.frames, track.keypoints)}


def compare_tracks(ours: Mapping[str, object], reference: Mapping[str, object], min_conf: float = 0.5,
                   match_px: float = 50.0) -> dict:
    """How tracks (H36M-17 :class:`Track`s) agree with reference tracks.

    Per reference frame, the reference person is matched to our nearest pose (mean distance
    over common joints, within ``match_px``); a reference track's *main* id is the id it matched
    most. Reported per reference track: frames, scored frames (where the reference has at least
    4 joints at ``min_conf``), coverage (matched / scored frames), mean and median distance on
    the matched frames, id switches (changes of the matched id between consecutive matched
    frames), and the unmatched frames that would match with our left and right swapped (the two
    detectors disagree on which side is which; not counted as matched).
    """
    from raypose.skeleton import FLIP_PERMUTATION

    mirror = list(FLIP_PERMUTATION)
    ours_by = {tid: _by_frame(t) for tid, t in ours.items()}
    report = {}
    for rid, ref in reference.items():
        matched: list[tuple[int, str, float]] = []
        swapped = 0
        for f, theirs in _by_frame(ref).items():
            here = [poses[f] for poses in ours_by.values() if f in poses]
            best = min(((d, tid) for tid, poses in ours_by.items() if f in poses
                        for d in [_frame_distance(poses[f], theirs, min_conf)] if np.isfinite(d)),
                       default=None)
            if best is not None and best[0] <= match_px:
                matched.append((f, best[1], best[0]))
            elif any(_frame_distance(pose[mirror], theirs, min_conf) <= match_px for pose in here):
                swapped += 1
        scored = sum(int((k[:, 2] >= min_conf).sum() >= 4) for k in ref.keypoints)
        ids = [tid for _, tid, _ in matched]
        distances = np.array([d for _, _, d in matched])
        main = max(set(ids), key=ids.count) if ids else None
        report[str(rid)] = {
            "frames": len(ref.frames), "scored_frames": scored, "matched_frames": len(matched),
            "coverage": round(len(matched) / max(scored, 1), 3), "track": main,
            "frames_on_main_track": ids.count(main) if main is not None else 0,
            "mean_px": round(float(distances.mean()), 2) if len(distances) else None,
            "median_px": round(float(np.median(distances)), 2) if len(distances) else None,
            "id_switches": int(sum(a != b for a, b in zip(ids, ids[1:]))),
            "left_right_swapped_frames": swapped,
        }
    return report
