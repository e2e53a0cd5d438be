"""Online lifting: 2D frames in as they arrive, 3D out with bounded latency.

A causal lifter (trained with ``data.causal: true``) predicts the newest frame of its window, so
each frame's 3D is ready as soon as its 2D is: the latency is one forward pass. A centred lifter
(every other checkpoint, the shipped one included) needs ``F // 2 · stride`` frames of the future,
so it answers that many (model-rate) frames late; both run here, and :class:`OnlineLifter` says
which delay it has. Either way a frame's window is exactly the one the offline path
(:func:`raypose.infer.lift_sequence`) builds — edge replication at the stream's start, and at its
end when the stream is flushed — so with the input at the model's frame rate and no gap filling
the online 3D equals the offline 3D. At another frame rate a window's frames are interpolated at
the model's rate from the frames seen so far (the offline path resamples the whole sequence).

Detector gaps are held, not interpolated: a joint lost for up to ``max_gap`` frames keeps its last
detection (the offline path interpolates across the gap, which needs the future).
"""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from raypose import skeleton
from raypose.data.clips import target_index
from raypose.data.detections import (VIDEO_SUFFIXES, Detections, Track, is_camera,
                                     iter_video_landmarks, read_detections, video_fps)
from raypose.data.sources._common import resample_keypoints
from raypose.errors import RayposeDataError
from raypose.infer import DEFAULT_CONF_THRESHOLD, INFER_PRECISIONS, Lifter, _eval_mode, _forward, prepare_2d


@dataclass
class LatencyLog:
    """Per-frame compute time (push → pose returned) and the window's built-in delay."""

    delay_frames: int                        # input frames between a frame's arrival and its 3D
    delay_s: float                           # the same in seconds at the input's frame rate
    compute_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Median / 95th percentile / max compute per frame (ms) and the delay."""
        c = np.asarray(self.compute_ms, np.float64)
        stats = {"frames": float(c.size), "delay_frames": float(self.delay_frames),
                 "delay_ms": 1000.0 * self.delay_s}
        if c.size:
            stats.update(compute_median_ms=float(np.median(c)),
                         compute_p95_ms=float(np.percentile(c, 95)), compute_max_ms=float(c.max()))
            stats["latency_p95_ms"] = stats["delay_ms"] + stats["compute_p95_ms"]
        return stats


class OnlineLifter:
    """One person's stream: :meth:`push` a frame's (17, 3) pixels + confidence, get back the
    3D frames that became ready (``(frame index, (17, 3) root-relative metres)``);
    :meth:`flush` at the end of the stream returns the rest.

    Memory is bounded: only the frames the next windows can still reach are kept.
    """

    def __init__(self, lifter: Lifter, width: float, height: float, fps: Optional[float] = None,
                 principal_point: Optional[Sequence[float]] = None, flip: bool = True,
                 conf_threshold: float = DEFAULT_CONF_THRESHOLD, max_gap: int = 0,
                 precision: str = "fp32", device: Optional[torch.device | str] = None):
        if precision not in INFER_PRECISIONS:
            raise ValueError(f"precision must be one of {INFER_PRECISIONS}, got {precision!r}")
        self.model, self.num_frames, self.stride = lifter.model, lifter.num_frames, lifter.stride
        self.causal = bool(getattr(lifter, "causal", False))
        self.width, self.height, self.principal_point = float(width), float(height), principal_point
        self.flip, self.conf_threshold, self.max_gap = flip, conf_threshold, int(max_gap)
        self.precision = precision
        # input frames per model frame: windows step ``stride`` model frames between samples
        self.ratio = (float(fps) / float(lifter.fps)) if (fps and lifter.fps) else 1.0
        target = target_index(self.num_frames, self.causal)
        self.offsets = (np.arange(self.num_frames) - target) * self.stride * self.ratio
        self.delay_frames = int(math.ceil(self.offsets[-1] - 1e-9))
        back = int(math.ceil(-self.offsets[0] + 1e-9))
        self._keep = back + self.delay_frames + 2          # frames a future window can still reach
        self.latency = LatencyLog(self.delay_frames, self.delay_frames / float(fps or lifter.fps or 30.0))
        if device is None:
            param = next(iter(self.model.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = torch.device(device)
        self._frames: list[np.ndarray] = []               # kept input frames (17, 3)
        self._first = 0                                   # index of self._frames[0] in the stream
        self._count = 0                                   # frames pushed
        self._next_out = 0                                # next frame whose 3D is owed
        self._last_seen = np.zeros((skeleton.NUM_JOINTS, 3), np.float32)
        self._last_seen_at = np.full(skeleton.NUM_JOINTS, -10 ** 9)

    # ------------------------------------------------------------------ stream
    def push(self, keypoints: Optional[np.ndarray]) -> list[tuple[int, np.ndarray]]:
        """Add the next frame (``None`` when nobody was detected) and lift the frames that are
        now ready: this one for a causal model, the one ``delay_frames`` back otherwise."""
        start = time.perf_counter()
        kp = (np.zeros((skeleton.NUM_JOINTS, 3), np.float32) if keypoints is None
              else np.asarray(keypoints, np.float32).reshape(skeleton.NUM_JOINTS, 3).copy())
        self._hold_gaps(kp)
        self._frames.append(kp)
        self._count += 1
        ready = [i for i in range(self._next_out, self._count)
                 if self._count - 1 >= i + self.delay_frames]
        out = self._lift(ready, last=self._count - 1)
        if out:
            self.latency.compute_ms.append(1000.0 * (time.perf_counter() - start))
        self._trim()
        return out

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """End of stream: the frames still owed, their future edge-replicated from the last."""
        return self._lift(list(range(self._next_out, self._count)), last=self._count - 1)

    @property
    def pushed(self) -> int:
        """Frames pushed so far."""
        return self._count

    # ------------------------------------------------------------------ internals
    def _hold_gaps(self, kp: np.ndarray) -> None:
        """A joint missing now but seen within ``max_gap`` frames keeps its last detection."""
        i = self._count
        seen = (kp[:, 2] > self.conf_threshold) & np.isfinite(kp[:, :2]).all(-1)
        self._last_seen[seen] = kp[seen]
        self._last_seen_at[seen] = i
        hold = ~seen & (i - self._last_seen_at <= self.max_gap)
        kp[hold] = self._last_seen[hold]

    def _window(self, i: int, last: int) -> np.ndarray:
        """(F, 17, 3) the frames of frame ``i``'s window, clamped to the stream seen so far and
        interpolated where the model's rate falls between input frames (as the offline path
        resamples: :func:`raypose.data.sources._common.resample_keypoints`)."""
        u = np.clip(i + self.offsets, 0.0, float(last))
        lo = np.floor(u).astype(np.int64)
        hi = np.minimum(lo + 1, last)
        w = (u - lo).astype(np.float32)
        kept = np.stack(self._frames)
        return resample_keypoints(kept, (lo - self._first, hi - self._first, w))

    def _lift(self, frames: list[int], last: int) -> list[tuple[int, np.ndarray]]:
        if not frames:
            return []
        xy, missing = zip(*(prepare_2d(self._window(i, last), self.width, self.height,
                                       self.conf_threshold, self.principal_point) for i in frames))
        dtype = next((p.dtype for p in self.model.parameters()), torch.float32)
        pose = torch.from_numpy(np.stack(xy)).to(device=self.device, dtype=dtype)
        miss = torch.from_numpy(np.stack(missing)).to(self.device)
        with _eval_mode(self.model), torch.inference_mode(), \
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            pred = _forward(self.model, pose, miss, self.flip)[0].float().cpu().numpy()
        pred = pred - pred[:, skeleton.ROOT:skeleton.ROOT + 1]
        self._next_out = frames[-1] + 1
        return [(i, p) for i, p in zip(frames, pred)]

    def _trim(self) -> None:
        drop = len(self._frames) - self._keep
        if drop > 0:
            del self._frames[:drop]
            self._first += drop


def stream_tracks(frames: Iterable[tuple[int, dict[str, np.ndarray]]],
                  make: Callable[[], OnlineLifter], end_after: int = 30
                  ) -> Iterator[tuple[int, str, np.ndarray]]:
    """Lift a stream of ``(frame, {track id: (17, 3) keypoints})`` as it arrives.

    One :class:`OnlineLifter` per track, made by ``make()`` when the track first appears. While
    a person is not detected nothing is pushed; when they are seen again the frames in between
    are pushed as undetected first (the gap was inside the track: windows keep real time
    spacing, as offline). A track absent for more than ``end_after`` frames has ended: it is
    flushed, so its last windows are edge-replicated from its last detection as offline, and
    its id starts afresh if it comes back. Frame numbers the stream skips count as frames where
    nobody was found. Yields ``(frame, track id, pose)`` as poses become ready, and the rest
    when a track ends or the stream does; for a centred lifter a gap therefore delays the
    frames just before it until the person is back (or gone).
    """
    live: dict[str, _TrackState] = {}

    def finish(tid: str) -> Iterator[tuple[int, str, np.ndarray]]:
        state = live.pop(tid)
        for k, pose in state.lifter.flush():
            yield state.first + k, tid, pose

    for n, people in frames:
        for tid in list(live):
            if tid not in people and n - live[tid].last_seen > end_after:
                yield from finish(tid)
        for tid, kp in people.items():
            state = live.get(tid)
            if state is None:
                state = live[tid] = _TrackState(make(), n, n)
            for _ in range(n - state.first - state.lifter.pushed):     # the gap, now known inside
                for k, pose in state.lifter.push(None):
                    yield state.first + k, tid, pose
            for k, pose in state.lifter.push(kp):
                yield state.first + k, tid, pose
            state.last_seen = n
    for tid in list(live):
        yield from finish(tid)


@dataclass
class _TrackState:
    lifter: OnlineLifter
    first: int                   # stream frame of the lifter's frame 0
    last_seen: int               # last stream frame the person was detected in


# --------------------------------------------------------------------------------------------
# the command's online mode (`raypose infer --online`)
# --------------------------------------------------------------------------------------------

def lift_online(args: Any, lifter: Lifter) -> tuple[Detections, dict[str, tuple[np.ndarray, np.ndarray]],
                                                   Optional[float], dict[str, float]]:
    """``raypose infer --online``: stream the input through one :class:`OnlineLifter` per person.

    A video (or ``camera:N``) is detected frame by frame as it is decoded — every person
    (:mod:`raypose.data.people`, tracked as the frames come) or one with ``--single-person`` —
    and a 2D file is replayed in frame order. A video's person is published (ids "0", "1", … in
    that order) once tracked for ``PeopleOptions.min_frames`` frames, as offline drops shorter
    tracks; their 3D is lifted from their first frame all the same. ``--max-people N`` keeps the
    first N people published. Returns the 2D seen (as :class:`Detections`, for the writers and
    renders), ``{id: (frames, poses)}``, the frame rate and the latency summary (also printed).
    """
    source = str(args.input)
    live = is_camera(source) or Path(source).suffix.lower() in VIDEO_SUFFIXES
    max_people = getattr(args, "max_people", None)
    confirm_after, renumber = 1, False
    if live:
        det = Detections({}, None, None, args.fps or video_fps(source), source,
                         None if is_camera(source) else source)
        if getattr(args, "single_person", False):
            frames = _detected_live(source, det, args.max_frames)
        else:
            from raypose.data.people import PeopleOptions

            options = PeopleOptions(max_people=max_people)
            confirm_after, renumber = options.min_frames, True
            frames = _people_live(source, det, args.max_frames, options)
    else:
        det = read_detections(source, args.layout)
        if det.layout:
            print(f"layout: {det.layout} ({det.layout_reason})", flush=True)
        det.fps = args.fps or det.fps
        frames = replay_detections(det, args.max_frames)
    if args.image_size:
        det.width, det.height = args.image_size
    fps = det.fps
    if fps is None and lifter.fps:
        raise RayposeDataError(source, "the frame rate is unknown: pass --fps (windows are "
                               "resampled to the model's rate)")
    logs: list[LatencyLog] = []

    def make() -> OnlineLifter:
        if not det.width or not det.height:
            raise RayposeDataError(source, "the input does not carry the image size: pass --image-size W H")
        one = OnlineLifter(lifter, det.width, det.height, fps, flip=not args.no_flip,
                           conf_threshold=args.conf_threshold,
                           max_gap=int(round(args.fill_gaps * (fps or 30.0))),
                           precision=args.precision, device=args.device)
        logs.append(one.latency)
        return one

    seen_2d: dict[str, dict[int, np.ndarray]] = {}

    def recorded() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for n, people in frames:
            for tid, kp in people.items():
                seen_2d.setdefault(tid, {})[n] = kp
            yield n, people

    public: dict[str, str] = {}                      # stream id → published id
    held: dict[str, list[tuple[int, np.ndarray]]] = {}
    lifted: dict[str, dict[int, np.ndarray]] = {}
    with _sink(getattr(args, "stream_out", None)) as write_line:
        def emit(tid: str, n: int, pose: np.ndarray) -> None:
            lifted.setdefault(tid, {})[n] = pose
            if write_line is not None:
                write_line(json.dumps({"frame": n, "track": tid,
                                       "joints_3d": np.round(pose.astype(np.float64), 4).tolist()}))

        for n, tid, pose in stream_tracks(recorded(), make):
            if tid not in public:
                if len(seen_2d[tid]) < confirm_after or (max_people is not None and len(public) >= max_people):
                    held.setdefault(tid, []).append((n, pose))      # not (yet) a person to publish
                    continue
                public[tid] = str(len(public)) if renumber else tid
                for m, earlier in held.pop(tid, []):
                    emit(public[tid], m, earlier)
            emit(public[tid], n, pose)
    if not lifted:
        raise RayposeDataError(source, "nobody was detected in the stream")
    det.tracks = {public[tid]: Track(np.array(sorted(f), np.int64), np.stack([f[k] for k in sorted(f)]))
                  for tid, f in seen_2d.items() if tid in public}
    results = {tid: (np.array(sorted(f), np.int64), np.stack([f[k] for k in sorted(f)]).astype(np.float32))
               for tid, f in lifted.items()}
    latency = merged_latency(logs)
    lifted_frames = sum(len(f) for f, _ in results.values())
    print(f"online: {lifted_frames} frames lifted, {latency['delay_frames']:.0f} frames of delay "
          f"({latency['delay_ms']:.0f} ms: {'causal' if lifter.causal else 'centred'} window), compute "
          f"{latency.get('compute_median_ms', 0):.1f} ms median / {latency.get('compute_p95_ms', 0):.1f} ms "
          "p95 per frame", flush=True)
    return det, results, fps, latency


def replay_detections(det: Detections, max_frames: Optional[int] = None
              ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """A detections file frame by frame, as a detector would have delivered it."""
    by_frame: dict[int, dict[str, np.ndarray]] = {}
    for tid, track in det.tracks.items():
        for f, kp in zip(track.frames.tolist(), track.keypoints):
            by_frame.setdefault(int(f), {})[tid] = kp
    if not by_frame:
        return
    first, last = min(by_frame), max(by_frame)
    for f in range(first, last + 1):          # frames where nobody was found arrive too
        if max_frames is not None and f - first >= max_frames:
            return
        yield f, by_frame.get(f, {})


def _detected_live(source: str, det: Detections, max_frames: Optional[int]
                   ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """MediaPipe on each frame as it is decoded; sets ``det``'s image size from the first."""
    for frame in iter_video_landmarks(source, max_frames=max_frames):
        if not det.width:
            det.width, det.height = frame.width, frame.height
        kp = frame.h36m
        yield frame.index, ({} if kp is None else {"0": kp})


def _people_live(source: str, det: Detections, max_frames: Optional[int], options: Any
                 ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Every person on each frame as it is decoded, linked to tracks as the frames come."""
    from itertools import islice

    from raypose.data import detections as D
    from raypose.data.people import TASKS_HARMLESS, TrackLinker, iter_people_frames

    linker = TrackLinker(options.max_gap, options.min_iou, options.max_shift, options.min_frames)
    frames = D.iter_video_frames(source)
    if max_frames is not None:
        frames = islice(frames, max_frames)
    with D._native_stderr_filtered(D.MEDIAPIPE_HARMLESS + TASKS_HARMLESS):
        for n, (poses, size) in enumerate(iter_people_frames(frames, det.fps or 30.0, options, source)):
            if not det.width:
                det.width, det.height = size
            yield n, {str(index): D.to_h36m(pose[None], "mediapipe33", source)[0]
                      for index, pose in linker.update(poses)}


@contextmanager
def _sink(path: Optional[str]) -> Iterator[Optional[Callable[[str], None]]]:
    """A line writer for ``--stream-out`` (flushed per line, so a reader sees each frame at
    once), or None."""
    if path is None:
        yield None
    elif path == "-":
        yield lambda line: print(line, flush=True)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            def write(line: str) -> None:
                f.write(line + "\n")
                f.flush()
            yield write


def merged_latency(logs: Sequence[LatencyLog]) -> dict[str, float]:
    """One latency summary over every person's lifter."""
    if not logs:
        return LatencyLog(0, 0.0).summary()
    merged = LatencyLog(logs[0].delay_frames, logs[0].delay_s,
                        [ms for log in logs for ms in log.compute_ms])
    return merged.summary()
