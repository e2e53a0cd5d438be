"""One typed configuration tree: dataclasses ↔ YAML ↔ ``--set a.b=c`` overrides ↔ dicts.

A YAML file in ``configs/`` is one serialised :class:`Config`. It may name a parent with
``inherit: other.yaml`` (resolved relative to the file), whose values it overrides key by key.
``Config.to_dict()`` is what Ray's ``train_loop_config`` and Tune's ``param_space`` receive,
and :func:`from_dict` rebuilds the typed tree on the worker.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from raypose.errors import ConfigError

class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 demands ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


MaskStrategy = Literal["none", "temporal", "spatial", "spatiotemporal", "tube", "hierarchical"]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class SourceConfig:
    """One input dataset: a sequence store (Parquet shards) or a raw file read on the fly."""

    name: str = "mocap"
    #: 'store' (Parquet shards made by jobs/prepare_data.py) or a reader format:
    #: 'mocap' / 'h36m' / 'amass' / 'coco' / 'mpi_inf_3dhp' / 'bvh'.
    format: str = "mocap"
    #: A path or s3:// URI; '' means the embedded default mocap shipped in the package.
    path: str = ""
    #: Sampling weight when several sources are mixed.
    weight: float = 1.0
    #: For 3D-only sources: how many virtual cameras to synthesise per sequence.
    virtual_cameras: int = 4
    #: Reader-specific options, e.g. {detector: cpn_ft_h36m_dbb} for h36m, {up_axis: y} for
    #: amass, {pseudo_labels: path} for coco, {actions: [walk]} for mocap, {units: cm} for bvh.
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.weight > 0, f"source {self.name}: weight must be > 0, got {self.weight}")
        _check(self.virtual_cameras >= 1, "virtual_cameras must be >= 1")


@dataclass
class RigConfig:
    """Virtual cameras for 3D-only sources (see :mod:`raypose.data.rig`); defaults by measurement.

    Every camera draws its azimuth, height, distance, lens and image shape from these ranges and
    follows the subject's horizontal travel, so training 2D covers real footage and never loses
    the subject out of the frame.
    """

    #: Cameras follow the subject's horizontal travel (False: aim at the mean pelvis, static).
    follow: bool = True
    #: Moving-average window (seconds) of the followed pelvis track: 0 follows exactly.
    follow_smoothing_s: float = 1.0
    #: Fixed azimuths in radians (camera i takes azimuths[i % n]); empty = evenly spaced around
    #: the full circle with a random phase per sequence.
    azimuths: list[float] = field(default_factory=list)
    azimuth_jitter_deg: float = 20.0
    #: Horizontal distance from the followed pelvis, metres [min, max].
    distance: list[float] = field(default_factory=lambda: [3.0, 8.0])
    #: Camera height above the floor, metres [min, max] (floor level to overhead-ish).
    height: list[float] = field(default_factory=lambda: [0.3, 3.0])
    #: 'pelvis': aim at the pelvis height (± aim_jitter), so pitch follows the camera height;
    #: 'horizontal': look level.
    look: Literal["pelvis", "horizontal"] = "pelvis"
    aim_jitter: float = 0.3
    #: Field of view across the image's long side, degrees [min, max] (phones ≈ 65–75).
    fov_deg: list[float] = field(default_factory=lambda: [40.0, 75.0])
    #: A fixed focal length in pixels (0 = drawn from fov_deg).
    focal: float = 0.0
    #: Image sizes [w, h], one drawn per camera: landscape and portrait, 4:3 and 16:9.
    image_sizes: list[list[int]] = field(default_factory=lambda: [
        [1000, 1002], [1920, 1080], [1080, 1920], [1280, 960], [960, 1280]])
    #: A fixed principal point [cx, cy] in pixels; empty = image centre ± principal_jitter·w.
    principal_point: list[float] = field(default_factory=list)
    principal_jitter: float = 0.01
    #: Largest fraction of frames allowed to have a joint outside the image; a camera that
    #: exceeds it moves back until the subject fits (1.0 = never move).
    max_out_of_frame: float = 0.0

    def __post_init__(self) -> None:
        for name in ("distance", "height", "fov_deg"):
            lo_hi = getattr(self, name)
            _check(len(lo_hi) == 2 and lo_hi[0] <= lo_hi[1], f"data.rig.{name} must be [min, max], got {lo_hi}")
        _check(self.distance[0] > 0, "data.rig.distance must be > 0")
        _check(0 < self.fov_deg[0] and self.fov_deg[1] < 180, "data.rig.fov_deg must be in (0, 180)")
        _check(bool(self.image_sizes) and all(len(s) == 2 and s[0] > 0 and s[1] > 0 for s in self.image_sizes),
               f"data.rig.image_sizes must be a list of [w, h], got {self.image_sizes}")
        _check(not self.principal_point or len(self.principal_point) == 2,
               "data.rig.principal_point must be [cx, cy] or empty")
        _check(self.follow_smoothing_s >= 0, "data.rig.follow_smoothing_s must be >= 0")
        _check(0 <= self.max_out_of_frame <= 1, "data.rig.max_out_of_frame must be in [0, 1]")


def protocol_rig() -> RigConfig:
    """The fixed test rig of the accuracy protocol (README, bench/accuracy.py): four cameras at
    azimuths 0.6/2.2/3.8/5.4 rad, 5 m from the subject, 1.2 m high, looking level and following
    the pelvis exactly; f = 1145 px, c = (512, 515), image 1000 × 1002."""
    return RigConfig(follow=True, follow_smoothing_s=0.0, azimuths=[0.6, 2.2, 3.8, 5.4],
                     azimuth_jitter_deg=0.0, distance=[5.0, 5.0], height=[1.2, 1.2],
                     look="horizontal", aim_jitter=0.0, focal=1145.0, image_sizes=[[1000, 1002]],
                     principal_point=[512.0, 515.0], principal_jitter=0.0, max_out_of_frame=1.0)


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    #: Receptive field of one clip (odd).
    num_frames: int = 27
    #: Temporal downsampling stride (TDS): a clip spans num_frames * stride source frames.
    stride: int = 1
    #: Online (causal) lifting: the predicted frame is the newest of its clip, which holds only
    #: that frame and the ones before it, so a stream can be lifted as frames arrive with no
    #: look-ahead (`raypose infer --online`); False centres the clip on the predicted frame.
    causal: bool = False
    #: Subjects used for training / validation (held out of training) / test; empty = all
    #: subjects not named elsewhere go to training.
    train_subjects: list[str] = field(default_factory=list)
    val_subjects: list[str] = field(default_factory=list)
    test_subjects: list[str] = field(default_factory=list)
    #: Resample every sequence to this frame rate (0 keeps the source rate).
    target_fps: float = 50.0
    #: Shape of the long chunks shipped to the device (frames); clips are cut on the device.
    chunk_frames: int = 256
    #: Chunks per step; with few clips from each, a step sees many sequences and views.
    batch_size: int = 32
    #: Clips drawn from every chunk of a batch (random centres) per step.
    clips_per_sequence: int = 4
    #: Chunks kept in Ray Data's local shuffle buffer for training (0 = off): batches then mix
    #: chunks of many sequences and views instead of neighbours of one.
    shuffle_buffer: int = 256
    flip_augment: bool = True
    #: Gaussian 2D noise std (normalised screen units: 0.004 ≈ 2 px on a 1000-px image).
    noise_std: float = 0.0
    #: Probability that a detected 2D joint is dropped (confidence 0) in a training clip.
    drop_joint_prob: float = 0.0
    #: Virtual cameras for 3D-only sources.
    rig: RigConfig = field(default_factory=RigConfig)
    #: Fraction of the training sequences whose 3D labels are used (label-scarcity studies:
    #: pretrain on every sequence's 2D with 1.0, fine-tune with e.g. 0.05 in
    #: ``train.stage_overrides.finetune``). A fixed subset of whole sequences (every view of a
    #: sequence goes together), at least one per source, drawn with ``train.seed`` — the same
    #: subset for every model trained at that seed. Applies to the train split only.
    label_fraction: float = 1.0
    #: Cap on shards read / frames, to keep smoke runs small (0 = no cap).
    max_sequences: int = 0
    shuffle_files: bool = True
    prefetch_batches: int = 2
    #: Splits whose chunks take at most this many MB are cut once and kept in Ray's object store
    #: (0 = always stream): otherwise every pass over a small dataset re-runs the chunking, which
    #: cost the wild recipe ≈18 s per 33 steps on 2 CPUs.
    cache_mb: float = 2048.0
    #: A training worker keeps its shard's chunks (and the validation chunks) in its own memory,
    #: on its device, after the first pass when they take at most this many MB (0 = never):
    #: later passes are re-shuffled there instead of each starting a Ray Data execution, which
    #: cost ≈1 s per pass (bench/train_step.py). Every rank's shard has the same size (Ray Train
    #: splits with equal=True), so all ranks decide alike.
    worker_cache_mb: float = 1024.0
    #: Clips per evaluation slice (every-frame centres are cut in slices to bound memory).
    eval_max_clips: int = 1024
    #: Endpoint for s3:// paths (e.g. a local S3 server); '' uses AWS defaults.
    s3_endpoint: str = ""

    def __post_init__(self) -> None:
        _check(self.num_frames >= 1 and self.num_frames % 2 == 1,
               f"data.num_frames must be a positive odd number, got {self.num_frames}")
        _check(self.stride >= 1, f"data.stride must be >= 1, got {self.stride}")
        _check(self.batch_size >= 1, "data.batch_size must be >= 1")
        _check(self.noise_std >= 0, "data.noise_std must be >= 0")
        _check(0.0 <= self.drop_joint_prob < 1.0, "data.drop_joint_prob must be in [0, 1)")
        _check(self.shuffle_buffer >= 0, "data.shuffle_buffer must be >= 0")
        _check(self.cache_mb >= 0, "data.cache_mb must be >= 0")
        _check(self.worker_cache_mb >= 0, "data.worker_cache_mb must be >= 0")
        _check(0.0 < self.label_fraction <= 1.0,
               f"data.label_fraction must be in (0, 1], got {self.label_fraction}")
        overlap = set(self.train_subjects) & (set(self.val_subjects) | set(self.test_subjects))
        overlap |= set(self.val_subjects) & set(self.test_subjects)
        _check(not overlap, f"subjects {sorted(overlap)} appear in more than one split")


@dataclass
class ModelConfig:
    #: Registry name: 'pstmo', 'pstmo_s', 'mpm', 'aptpose', 'baseline', 'image_lift'.
    name: str = "pstmo_s"
    #: Defaults: the small P-STMO-S of the main job (`python jobs/pretrain.py` with no arguments),
    #: sized so pretrain → fine-tune → evaluate learns in minutes on 2 CPU cores; the paper
    #: configs (configs/pstmo.yaml, …) set the papers' sizes.
    dim: int = 128
    ffn_dim: int = 256
    heads: int = 4
    depth: int = 3
    decoder_depth: int = 2
    #: Pretraining decoder width; 0 takes the model's own default (d/2, as the papers).
    decoder_dim: int = 0
    sem_hidden: int = 256
    dropout: float = 0.1
    #: MOFA strides; empty derives them from num_frames (9/27/81/243 → [1,3,3]/[3,3,3]/...).
    strides: list[int] = field(default_factory=list)
    #: APTPose hierarchical fusion: 'mul' (normalised product) | 'mul_raw' (the reference code's
    #: unnormalised product) | 'add' | 'avg' | 'cat' (:class:`raypose.models.blocks.Fusion`).
    fusion: str = "mul"
    #: Extra keyword arguments passed to the registry builder.
    extra: dict[str, Any] = field(default_factory=dict)
    #: A trajectory head beside the pose (fine-tuning; pstmo, pstmo_s, window_mlp): the predicted
    #: frame's camera-space root position, trained by ``loss.trajectory`` on data with root
    #: positions (world-frame 3D: mocap through the rig, H36M); inference then also outputs it.
    trajectory: bool = False

    def __post_init__(self) -> None:
        _check(self.dim > 0 and self.dim % self.heads == 0,
               f"model.dim ({self.dim}) must be a positive multiple of model.heads ({self.heads})")
        _check(0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)")
        _check(self.fusion in ("mul", "mul_raw", "add", "avg", "cat"), f"model.fusion {self.fusion!r} unknown")


@dataclass
class MaskingConfig:
    strategy: MaskStrategy = "spatiotemporal"
    #: q_T: fraction of frames dropped (P-STMO best: 0.8 with m_S=2).
    temporal_ratio: float = 0.8
    #: m_S: joints masked per visible frame.
    spatial_joints: int = 2
    #: APTPose hierarchy levels used by 'hierarchical'.
    levels: list[str] = field(default_factory=lambda: ["keypoint", "bone", "limb", "body"])
    #: Also mask joints the detector missed (confidence 0 / NaN).
    mask_missing: bool = True
    #: Hierarchical masking: anatomy groups masked per frame at each level
    #: (defaults: keypoint = spatial_joints, bone = limb = body = 1).
    level_groups: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        limits = {"keypoint": 17, "bone": 16, "limb": 4, "body": 2}
        for level, count in self.level_groups.items():
            _check(level in limits, f"masking.level_groups: unknown level {level!r}")
            _check(0 <= int(count) <= limits[level],
                   f"masking.level_groups.{level} must be in [0, {limits[level]}], got {count}")
        _check(0.0 <= self.temporal_ratio < 1.0, "masking.temporal_ratio must be in [0, 1)")
        _check(0 <= self.spatial_joints <= 17, "masking.spatial_joints must be in [0, 17]")
        bad = set(self.levels) - {"keypoint", "bone", "limb", "body"}
        _check(not bad, f"masking.levels has unknown levels {sorted(bad)}")


@dataclass
class LossConfig:
    #: Fine-tuning: multi-frame and single-frame (centre) 3D pose terms.
    multi_frame: float = 1.0
    single_frame: float = 1.0
    #: APTPose bone-vector terms for the multi- and single-frame outputs.
    bone_multi_frame: float = 0.0
    bone_single_frame: float = 0.0
    velocity: float = 0.0
    #: Pretraining reconstruction weights (MPM λ2D=2, λ3D=3; APTPose λ2D, λ3D).
    rec_2d: float = 1.0
    rec_3d: float = 0.0
    #: Reconstruction loss on masked positions only (MAE) instead of all frames.
    masked_only: bool = False
    #: Trajectory head (``model.trajectory``): root position error relative to depth
    #: (:func:`raypose.losses.trajectory_loss`). Low because it shares the encoder with the pose:
    #: in a short run of a small window MLP, 1.0 raised held-out MPJPE by 32–66 %, 0.1 by 0.5–3 %
    #: (README, "World trajectory").
    trajectory: float = 0.1


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw"] = "adam"
    lr: float = 7e-4
    weight_decay: float = 0.0
    #: Multiplicative learning-rate decay per epoch (P-STMO: 0.97).
    lr_decay: float = 0.97
    grad_clip: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr must be > 0")
        _check(0 < self.lr_decay <= 1, "optim.lr_decay must be in (0, 1]")
        _check(len(self.betas) == 2, "optim.betas needs two values")


@dataclass
class TrainConfig:
    stage: Literal["pretrain", "finetune"] = "finetune"
    epochs: int = 3
    #: Optimizer steps per epoch (0 = one pass over the training chunks).
    steps_per_epoch: int = 80
    strategy: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    #: fp32 matmuls and convolutions on TF32 tensor cores (Ampere and later; ≈10-bit mantissa
    #: inputs). Off by default, as in torch; the GPU bench measures both.
    tf32: bool = False
    grad_accum: int = 1
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    #: torch intra-op threads per worker (0 = Ray's default, the worker's CPUs). On a small
    #: machine a worker may use more threads than the CPUs it reserves, leaving the rest of the
    #: reservation to Ray Data (which is idle most of the time once chunks are cut).
    torch_threads: int = 0
    #: Report metrics / checkpoint every N epochs.
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    storage_path: str = ""
    run_name: str = ""
    max_failures: int = 1
    seed: int = 0
    #: Initial weights for fine-tuning: a checkpoint path or URI.
    init: str = ""
    #: Refuse a train.init checkpoint whose encoder does not fit the model exactly (another
    #: width, depth or model); false fine-tunes anyway, leaving the listed tensors as initialised.
    #: Positional embeddings of another clip length are resampled either way.
    init_strict: bool = True
    flip_test: bool = True
    #: Validation clips evaluated per epoch (every-frame centres, capped).
    val_max_clips: int = 2048
    #: Stop early once the validation metric has not beaten its best by more than
    #: ``plateau_delta`` (relative) for this many epochs (0 = always run ``epochs``): "train
    #: until the validation loss plateaus", with ``epochs`` as the cap. Needs a validation split.
    plateau_patience: int = 0
    plateau_delta: float = 0.01
    #: Endpoint for an s3:// storage_path / init URI (e.g. a local S3 server); '' falls back to
    #: data.s3_endpoint, then AWS defaults.
    s3_endpoint: str = ""
    #: Fault injection for testing FailureConfig: the last rank exits once, mid-way through this
    #: epoch (-1 = never). A restarted attempt resumes from the last checkpoint and goes on.
    fail_at_epoch: int = -1
    #: Per-stage settings applied on top of this config when that stage runs, e.g.
    #: ``{pretrain: {optim.lr: 1.0e-4, train.epochs: 80}}`` (one YAML file for both stages).
    stage_overrides: dict[str, Any] = field(
        default_factory=lambda: {"pretrain": {"optim.lr": 1e-4, "train.steps_per_epoch": 40},
                                 "finetune": {"optim.lr": 7e-4}})

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs must be >= 1")
        _check(self.plateau_patience >= 0, "train.plateau_patience must be >= 0")
        _check(0.0 <= self.plateau_delta < 1.0, "train.plateau_delta must be in [0, 1)")
        _check(self.zero_stage in (0, 1, 2, 3), "train.zero_stage must be 0..3")
        _check(not (self.strategy == "ddp" and self.zero_stage), "train.zero_stage needs strategy deepspeed")
        _check(not (self.precision == "bf16" and not self.use_gpu and self.strategy == "ddp"),
               "train.precision bf16 is a GPU setting (or DeepSpeed on CPU)")
        _check(self.grad_accum >= 1 and self.num_workers >= 1, "grad_accum and num_workers must be >= 1")
        _check(self.cpus_per_worker > 0, "train.cpus_per_worker must be > 0")
        _check(self.torch_threads >= 0, "train.torch_threads must be >= 0")
        bad = set(self.stage_overrides) - {"pretrain", "finetune"}
        _check(not bad, f"train.stage_overrides has unknown stages {sorted(bad)}")


@dataclass
class TuneConfig:
    num_samples: int = 8
    #: 'random' | 'grid' | 'optuna'.
    search: str = "random"
    max_concurrent_trials: int = 0
    pretrain_epochs: int = 1
    finetune_epochs: int = 2
    grace_period: int = 1
    #: ASHA keeps 1/reduction_factor of the trials at each rung (fine-tuning epochs).
    reduction_factor: int = 2
    #: Search space: dotted config key -> {type: uniform|loguniform|randint|choice, ...}.
    space: dict[str, Any] = field(default_factory=lambda: {
        "masking.temporal_ratio": {"type": "uniform", "low": 0.4, "high": 0.95},
        "masking.spatial_joints": {"type": "randint", "low": 0, "high": 7},
        "masking.strategy": {"type": "choice", "values": ["spatiotemporal", "hierarchical"]},
        "loss.rec_3d": {"type": "loguniform", "low": 0.1, "high": 10.0},
    })
    #: Settings to try first (the papers' choices).
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    storage_path: str = ""
    name: str = ""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def __post_init__(self) -> None:
        # these lift the middle frame they are handed; a causal clip must predict its last one
        _check(not (self.data.causal and self.data.num_frames > 1
                    and self.model.name in ("baseline", "image_lift")),
               f"model {self.model.name!r} lifts the centre frame of its clip, so it cannot be "
               "trained with data.causal: true and num_frames > 1 (use num_frames: 1, which is "
               "causal already, or a window model: window_mlp, pstmo_s, pstmo, mpm, aptpose)")
        # the trajectory head reads the centre frame's 2D for its depth scale
        _check(not (self.data.causal and self.model.trajectory),
               "model.trajectory is not available with data.causal: true yet (the trajectory head "
               "reads the centre frame's 2D); train the online lifter without it")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> "Config":
        """A copy with dotted overrides applied (``{'a.b': v}`` or ``['a.b=v', ...]``).

        An override also replaces the same key inside ``train.stage_overrides``, so what a
        user sets last wins over per-stage values a YAML file carries.
        """
        if isinstance(overrides, dict):
            items = list(overrides.items())
        else:
            items = [_split_assignment(s) for s in overrides]
        d = self.to_dict()
        for key, value in items:
            _set_dotted(d, key, value, parse=isinstance(value, str) and not isinstance(overrides, dict))
            if key.split(".")[0] in ("data", "model", "masking", "loss", "optim", "train", "tune"):
                leaf = _get_dotted(d, key)
                for per_stage in d["train"].get("stage_overrides", {}).values():
                    if key in per_stage:
                        per_stage[key] = leaf
        return from_dict(d)


# --------------------------------------------------------------------------------------------
# dict ↔ dataclass with type checking
# --------------------------------------------------------------------------------------------

def _split_assignment(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form a.b=value")
    key, value = text.split("=", 1)
    return key.strip(), value


def _set_dotted(d: dict[str, Any], key: str, value: Any, parse: bool) -> None:
    parts = key.split(".")
    node = d
    for i, p in enumerate(parts[:-1]):
        if not isinstance(node, dict) or p not in node:
            raise ConfigError(f"unknown config key {'.'.join(parts[: i + 1])!r} (in override {key!r})")
        node = node[p]
    leaf = parts[-1]
    if not isinstance(node, dict) or (leaf not in node and not _is_free_dict(parts)):
        raise ConfigError(f"unknown config key {key!r}")
    node[leaf] = _yaml_load(value) if parse else value


def _get_dotted(d: dict[str, Any], key: str) -> Any:
    for p in key.split("."):
        d = d[p]
    return d


def _is_free_dict(parts: list[str]) -> bool:
    """Keys under model.extra / tune.space are free-form."""
    return parts[:2] in (["model", "extra"], ["tune", "space"], ["masking", "level_groups"]) and len(parts) >= 3


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = get_args(tp) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None


#: Keys that older configs (and the checkpoints that carry them) may hold and that no code ever
#: read: dropped on load so those checkpoints stay loadable. Nothing else is ever ignored.
RETIRED_KEYS: tuple[tuple[str, str], ...] = (("data", "image_width"), ("data", "image_height"))


def from_dict(values: dict[str, Any]) -> Config:
    """Typed :class:`Config` from a (possibly partial) nested dict; unknown keys are errors."""
    values = copy.deepcopy(values)
    for section, key in RETIRED_KEYS:
        if isinstance(values.get(section), dict):
            values[section].pop(key, None)
    return _build(Config, values, "")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("extra", "space", "options", "level_groups"):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: inherit cycle through {[str(p) for p in seen]}")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = _yaml_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a mapping")
    parent = raw.pop("inherit", None)
    if parent:
        return _deep_merge(_read_yaml_tree(path.parent / parent, seen + (path,)), raw)
    return raw


def load(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Load a YAML config (following ``inherit:``), then apply overrides."""
    values = _read_yaml_tree(Path(path)) if path else {}
    try:
        cfg = from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg.with_overrides(overrides) if overrides else cfg


def add_cli_arguments(parser) -> None:
    """The ``--config`` / ``--set`` pair every job takes."""
    parser.add_argument("--config", default=None, help="YAML config in configs/ (inherit: allowed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=3 (repeatable)")


def from_cli(args) -> Config:
    return load(args.config, args.overrides)


def with_absolute_sources(cfg: Config, root: str | Path) -> Config:
    """``cfg`` with its data sources' relative local paths made absolute against ``root`` (the
    directory they were written relative to): a Ray task or Tune trial may run in another
    working directory (Tune moves each trial into its own folder)."""
    sources = []
    for src in cfg.data.sources:
        entry = dataclasses.asdict(src)
        if src.path and "://" not in src.path and not Path(src.path).is_absolute():
            entry["path"] = str(Path(root).resolve() / src.path)
        sources.append(entry)
    return cfg.with_overrides({"data.sources": sources})
