"""Clips cut on the training device from long chunks, by index gather.

The pipeline ships fixed-length chunks of whole sequences (``keypoints_2d`` / ``joints_3d``
(B, L, 17, 3), ``camera`` (B, 23), ``length`` (B,), ``has_3d`` (B,)). A P-STMO clip is F frames
around a centre frame with temporal-downsampling stride s (span F·s) — or, for online lifting
(``data.causal``), the F frames up to and including the predicted frame, so the model never
sees the future (:func:`target_index`); materialising clips on the
CPU would multiply the data F-fold, so here one index tensor (B, C, F) gathers every clip of a
batch at once, with edge replication where a clip runs past either end of its sequence.

2D keypoints are normalised to screen coordinates centred on the chunk camera's principal point
(``(X − c)/w·2``, :func:`raypose.cameras.normalize_screen`), so a mirror is exactly ``x → −x``;
missing detections (confidence ≤ 0 or NaN, or non-finite coordinates) become coordinates 0 with
confidence 0 — masking reads them from ``confidence`` — and missing 3D joints (NaN in the store)
become 0 with ``valid_3d`` False, which the losses read — so no NaN ever leaves this module.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterator, Mapping, Optional

import torch

from raypose import skeleton
from raypose.masking import normal, uniform

#: Default cap on clips per evaluation slice (≈100 MB of float32 at F = 243).
EVAL_MAX_CLIPS = 1024


@dataclass
class ClipBatch:
    """N clips of F frames; index :attr:`centre_index` is the frame the lifter predicts."""

    pose_2d: torch.Tensor               # (N, F, 17, 2) normalised screen coordinates
    confidence: torch.Tensor            # (N, F, 17) 0 where the detection is missing
    pose_3d: torch.Tensor               # (N, F, 17, 3) root-relative camera metres
    has_3d: torch.Tensor                # (N,) bool
    valid: torch.Tensor                 # (N, F) bool, False at edge-replicated (padded) frames
    #: Which chunk of the batch and which frame of it each clip is centred on (for evaluation,
    #: to put per-frame predictions back in sequence order).
    chunk_index: Optional[torch.Tensor] = None   # (N,) int64
    frame_index: Optional[torch.Tensor] = None   # (N,) int64
    camera: Optional[torch.Tensor] = None        # (N, 23) the chunk's camera
    #: (N, F, 17) bool: the 3D target joint is known (False where the source had NaN/inf).
    valid_3d: Optional[torch.Tensor] = None
    #: (N, F, 3) camera-space root (pelvis) metres, 0 where unknown (a known root has z > 0).
    root_3d: Optional[torch.Tensor] = None
    #: Clips end at the predicted frame (online lifting) instead of being centred on it.
    causal: bool = False

    @property
    def num_clips(self) -> int:
        return int(self.pose_2d.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.pose_2d.shape[1])

    @property
    def centre_index(self) -> int:
        """Index of the predicted frame: the centre, or the newest frame of a causal clip."""
        return target_index(self.num_frames, self.causal)

    @property
    def centre(self) -> torch.Tensor:
        """(N, 17, 3) the 3D target of the predicted frame."""
        return self.pose_3d[:, self.centre_index]

    def to(self, device) -> "ClipBatch":
        return ClipBatch(**{f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
                            for f in fields(self) for v in [getattr(self, f.name)]})


# --------------------------------------------------------------------------------------------
# indices
# --------------------------------------------------------------------------------------------

def target_index(num_frames: int, causal: bool = False) -> int:
    """Position of the predicted frame in an F-frame clip: the centre ``F // 2``, or the last
    frame ``F − 1`` for a causal (online) clip, which holds only that frame and its past."""
    return num_frames - 1 if causal else num_frames // 2


def raw_indices(centres: torch.Tensor, num_frames: int, stride: int,
                causal: bool = False) -> torch.Tensor:
    """(…, F) frame indices ``centre + (k − target)·stride`` before clamping, ``target`` from
    :func:`target_index` (so a causal clip ends at ``centre``)."""
    offsets = (torch.arange(num_frames, device=centres.device)
               - target_index(num_frames, causal)) * stride
    return centres.long()[..., None] + offsets


def _lengths_like(lengths: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Lengths (B,) broadcast against centres (B, …) plus a trailing frame axis."""
    extra = centres.dim() - lengths.dim() + 1
    return lengths.long().reshape(tuple(lengths.shape) + (1,) * extra)


def gather_indices(lengths: torch.Tensor, centres: torch.Tensor, num_frames: int,
                   stride: int = 1, causal: bool = False) -> torch.Tensor:
    """(B, C, F) frame indices of clips predicting ``centres`` (B, C), clamped to [0, length−1].

    Clamping is edge replication: frames before the start repeat frame 0, frames after the end
    repeat the last valid frame. ``lengths`` may also be (N,) with ``centres`` (N,).
    """
    t = raw_indices(centres, num_frames, stride, causal)
    last = (_lengths_like(lengths, centres) - 1).clamp_min(0)
    return torch.minimum(t.clamp_min(0), last)


def owned_centres(chunks: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, stop) of the centres each chunk owns.

    Overlapping chunks carry context frames on both sides (``centre_start`` / ``centre_stop``
    from the pipeline); only the owned range is used as centres, so every sequence frame is a
    centre exactly once across chunks. Without those keys a chunk owns all its valid frames.
    """
    length = chunks["length"].long()
    if "centre_start" in chunks:
        return chunks["centre_start"].long(), torch.minimum(chunks["centre_stop"].long(), length)
    return torch.zeros_like(length), length


def random_centres(lengths: torch.Tensor, per_chunk: int,
                   generator: Optional[torch.Generator],
                   start: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, per_chunk) centres drawn uniformly from ``[start, lengths)`` (start defaults to 0)."""
    start = torch.zeros_like(lengths.long()) if start is None else start.long()
    u = uniform((lengths.shape[0], per_chunk), generator, lengths.device)
    n = (lengths.long() - start).clamp_min(1)[:, None]
    return start[:, None] + torch.minimum((u * n).long(), n - 1)


def all_centres(length: int | torch.Tensor, device=None) -> torch.Tensor:
    """(length,) every frame of one chunk as a centre."""
    return torch.arange(int(length), device=device)


def every_frame(lengths: torch.Tensor,
                start: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(chunk, frame) pairs covering frames ``[start, lengths)`` of every chunk once, in order."""
    start = torch.zeros_like(lengths.long()) if start is None else start.long()
    counts = (lengths.long() - start).clamp_min(0)
    chunk = torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    frame = torch.arange(chunk.shape[0], device=counts.device) - offsets[chunk] + start[chunk]
    return chunk, frame


# --------------------------------------------------------------------------------------------
# cutting
# --------------------------------------------------------------------------------------------

def normalize_screen(xy: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`raypose.cameras.normalize_screen`: (N, …, 2) pixels with per-row
    cameras (N, 23) → screen units centred on each camera's principal point."""
    extra = (1,) * (xy.dim() - 2)
    width = camera[:, 0].reshape((-1,) + extra + (1,))
    centre = camera[:, 4:6].reshape((-1,) + extra + (2,))
    return (xy - centre) / width * 2


def _cut(chunks: Mapping[str, torch.Tensor], chunk: torch.Tensor, centre: torch.Tensor,
         num_frames: int, stride: int, causal: bool = False) -> ClipBatch:
    """Clips n = 1..N predicting frame ``centre[n]`` of chunk ``chunk[n]``."""
    lengths = chunks["length"].long()[chunk]
    raw = raw_indices(centre, num_frames, stride, causal)                     # (N, F)
    idx = gather_indices(lengths, centre, num_frames, stride, causal)         # (N, F)
    rows = chunk[:, None]
    kp = chunks["keypoints_2d"][rows, idx].float()                      # (N, F, 17, 3)
    camera = chunks["camera"][chunk].float()

    conf = kp[..., 2]
    xy = normalize_screen(kp[..., :2], camera)
    missing = ~(conf > 0) | ~torch.isfinite(xy).all(-1)
    pose_2d = torch.where(missing[..., None], torch.zeros_like(xy), xy)
    confidence = torch.where(missing, torch.zeros_like(conf), conf)

    joints_3d = chunks["joints_3d"][rows, idx].float()
    valid_3d = torch.isfinite(joints_3d).all(-1)
    pose_3d = torch.where(valid_3d[..., None], joints_3d, torch.zeros_like(joints_3d))
    valid = (raw >= 0) & (raw < lengths[:, None])
    if "valid" in chunks:
        valid = valid & chunks["valid"][rows, idx].bool()
    root_3d = None
    if "root_3d" in chunks:
        root_3d = chunks["root_3d"][rows, idx].float()
        root_3d = torch.where(torch.isfinite(root_3d).all(-1, keepdim=True), root_3d, torch.zeros_like(root_3d))
    return ClipBatch(pose_2d, confidence, pose_3d, chunks["has_3d"][chunk].bool(), valid,
                     chunk_index=chunk, frame_index=centre.long(), camera=camera, valid_3d=valid_3d,
                     root_3d=root_3d, causal=causal)


def cut_clips(chunks: Mapping[str, torch.Tensor], num_frames: int, stride: int,
              centres: torch.Tensor, causal: bool = False) -> ClipBatch:
    """B·C clips (chunk-major) predicting ``centres`` (B, C), gathered and normalised."""
    b, c = centres.shape
    chunk = torch.arange(b, device=centres.device).repeat_interleave(c)
    return _cut(chunks, chunk, centres.reshape(-1).long(), num_frames, stride, causal)


def flip_clip_batch(clips: ClipBatch, which: Optional[torch.Tensor] = None) -> ClipBatch:
    """Mirror clips (all, or those where ``which`` (N,) is True): x → −x and left ↔ right.

    Screen coordinates are centred on the principal point, so the image mirror about it
    (``X → 2cx − X``, the 2D of the mirrored 3D) is exactly ``x → −x``, and in camera space it is
    ``X → −X``; confidences follow their joints. Used for flip augmentation
    and for test-time flip averaging.
    """
    perm = torch.tensor(skeleton.FLIP_PERMUTATION, device=clips.pose_2d.device)
    sign2 = torch.tensor([-1.0, 1.0], device=clips.pose_2d.device)
    sign3 = torch.tensor([-1.0, 1.0, 1.0], device=clips.pose_3d.device)
    pose_2d = clips.pose_2d.index_select(2, perm) * sign2
    pose_3d = clips.pose_3d.index_select(2, perm) * sign3
    confidence = clips.confidence.index_select(2, perm)
    valid_3d = None if clips.valid_3d is None else clips.valid_3d.index_select(2, perm)
    root_3d = None if clips.root_3d is None else clips.root_3d * sign3
    if which is not None:
        w = which.bool()
        pose_2d = torch.where(w[:, None, None, None], pose_2d, clips.pose_2d)
        pose_3d = torch.where(w[:, None, None, None], pose_3d, clips.pose_3d)
        confidence = torch.where(w[:, None, None], confidence, clips.confidence)
        if valid_3d is not None:
            valid_3d = torch.where(w[:, None, None], valid_3d, clips.valid_3d)
        if root_3d is not None:
            root_3d = torch.where(w[:, None, None], root_3d, clips.root_3d)
    return replace(clips, pose_2d=pose_2d, pose_3d=pose_3d, confidence=confidence, valid_3d=valid_3d,
                   root_3d=root_3d)


def add_noise(clips: ClipBatch, std: float, generator: Optional[torch.Generator]) -> ClipBatch:
    """Gaussian noise of ``std`` (normalised units) on detected 2D joints; missing stay at 0."""
    if std <= 0:
        return clips
    noise = normal(clips.pose_2d.shape, generator, clips.pose_2d.device) * std
    present = (clips.confidence > 0)[..., None]
    return replace(clips, pose_2d=torch.where(present, clips.pose_2d + noise, clips.pose_2d))


def drop_joints(clips: ClipBatch, prob: float, generator: Optional[torch.Generator]) -> ClipBatch:
    """Each detected joint of each frame goes missing with ``prob`` (coordinates 0, confidence
    0), as detectors lose occluded joints; the models read missing joints from the confidence."""
    if prob <= 0:
        return clips
    drop = uniform(clips.confidence.shape, generator, clips.confidence.device) < prob
    return replace(clips, pose_2d=torch.where(drop[..., None], torch.zeros_like(clips.pose_2d), clips.pose_2d),
                   confidence=torch.where(drop, torch.zeros_like(clips.confidence), clips.confidence))


def train_clips(chunks: Mapping[str, torch.Tensor], data_cfg,
                generator: Optional[torch.Generator]) -> ClipBatch:
    """Training clips: random centres, flip (p = 0.5 per clip), 2D noise, dropped joints — all
    on the device."""
    start, stop = owned_centres(chunks)
    centres = random_centres(stop, data_cfg.clips_per_sequence, generator, start)
    clips = cut_clips(chunks, data_cfg.num_frames, data_cfg.stride, centres,
                      bool(getattr(data_cfg, "causal", False)))
    if data_cfg.flip_augment:
        flip = uniform((clips.num_clips,), generator, clips.pose_2d.device) < 0.5
        clips = flip_clip_batch(clips, flip)
    clips = add_noise(clips, float(data_cfg.noise_std), generator)
    return drop_joints(clips, float(getattr(data_cfg, "drop_joint_prob", 0.0)), generator)


def eval_clips(chunks: Mapping[str, torch.Tensor], data_cfg,
               max_clips: Optional[int] = None) -> Iterator[ClipBatch]:
    """Every valid frame of every chunk as a centre, in slices of ≤ ``max_clips`` clips.

    Slices follow chunk then frame order; ``chunk_index`` / ``frame_index`` say where each clip
    belongs. No augmentation: flip averaging is the caller's choice (:func:`flip_clip_batch`).
    """
    limit = int(max_clips or getattr(data_cfg, "eval_max_clips", 0) or EVAL_MAX_CLIPS)
    start, stop = owned_centres(chunks)
    chunk, frame = every_frame(stop, start)
    for start in range(0, chunk.shape[0], limit):
        yield _cut(chunks, chunk[start:start + limit], frame[start:start + limit],
                   data_cfg.num_frames, data_cfg.stride, bool(getattr(data_cfg, "causal", False)))
