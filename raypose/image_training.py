"""Two-stage progressive training of the image-lifting model: data, loss, evaluation, and a
plain torch loop for studies.

``raypose image-lift`` runs each stage on Ray Train (:mod:`raypose.train.image_loop`) with
these pieces — :func:`render_share`, :func:`stage_loss`, :func:`evaluate`,
:func:`load_stage1` — and the lifters' strategy / checkpoint / report machinery;
:func:`train_stage` is the in-process loop ``bench/image_lift_study.py`` runs many of side by
side (same :func:`stage_loss`).

Stage 1 trains the image encoder, keypoint tokens, the three query layers and the coarse head
with MSE on the coarse pose; stage 2 freezes all of that and trains the stage-2 layers and the
refined head on the refined pose (Zhou et al.: "first train the initial interaction stage and
image encoder … and freeze them to train the remaining modules").

Data: either crops rendered from 3D mocap (:mod:`raypose.render`, held in memory — the study's
and the default source) or an image folder with labels streamed by Ray Data
(:mod:`raypose.data.images`). Both give the same torch batches: ``image`` (B, 3, H, W),
``pose_2d`` (B, 1, 17, 2), ``pose_3d`` (B, 1, 17, 3), ``keypoints_crop`` (B, 17, 2).

Data-side settings live in ``model.extra.image_data`` (the model ignores them)::

    source: render | folder        labels: [path/to/labels.npz, ...]   (folder)
    cameras: 2   frame_step: 8   max_frames: 0   padding: 1.25          (render)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from raypose.cameras import normalize_screen
from raypose.metrics import mpjpe, p_mpjpe
from raypose.imaging import normalize_image
from raypose.models.image_lift import ImageLift, background_attention_share, background_fraction

Batch = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- data


def render_split(subjects: Sequence[str], rng: np.random.Generator, crop_size: tuple[int, int],
                 cameras: int = 2, frame_step: int = 8, max_frames: int = 0, mocap_path: str = "",
                 target_fps: float = 0.0) -> dict[str, np.ndarray]:
    """Render the mocap clips of ``subjects`` (shared data if present, else the embedded
    subset) into crops; adds ``pose_2d`` (N, 17, 2) normalised screen coordinates."""
    from raypose.data.sources import default_mocap_path, read_mocap
    from raypose.render import render_records

    path = mocap_path or _shared_mocap() or str(default_mocap_path())
    records = read_mocap(path, target_fps=target_fps, subjects=list(subjects) or None)
    if not records:
        raise ValueError(f"no mocap clips of subjects {list(subjects)} in {path}")
    out = render_records(records, rng, cameras, frame_step, crop_size, max_frames)
    w, h = out["camera"][0, 0], out["camera"][0, 1]
    out["pose_2d"] = normalize_screen(out["keypoints_2d"][..., :2], w, h).astype(np.float32)
    return out


def _shared_mocap() -> str:
    p = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap_h36m17.npz"
    return str(p) if p.is_file() else ""


def to_batch(arrays: dict[str, np.ndarray], index: np.ndarray, device: Any = "cpu") -> Batch:
    """Rows ``index`` of in-memory arrays → a torch batch."""
    t = lambda k: torch.as_tensor(arrays[k][index], device=device)  # noqa: E731
    return {"image": normalize_image(t("image")), "pose_2d": t("pose_2d").float().unsqueeze(1),
            "pose_3d": t("joints_3d").float().unsqueeze(1), "keypoints_crop": t("keypoints_crop").float()}


def random_batches(arrays: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator,
                   device: Any = "cpu") -> Iterator[Batch]:
    """Endless shuffled batches (reshuffled every pass)."""
    n = len(arrays["image"])
    while True:
        order = rng.permutation(n)
        for s in range(0, n - batch_size + 1, batch_size):
            yield to_batch(arrays, order[s:s + batch_size], device)


def ordered_batches(arrays: dict[str, np.ndarray], batch_size: int, device: Any = "cpu") -> Iterator[Batch]:
    n = len(arrays["image"])
    for s in range(0, n, batch_size):
        yield to_batch(arrays, np.arange(s, min(n, s + batch_size)), device)


# ----------------------------------------------------------------------------- training


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 3: Σ_joints ‖Y − Ŷ‖², averaged over the batch."""
    return (pred - target).pow(2).sum(-1).sum(-1).mean()


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def stage_loss(model: torch.nn.Module, batch: Batch, stage: int,
               prepare: Callable[[torch.Tensor], torch.Tensor] = _identity
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, parts) of one batch for ``stage``: the coarse (1) or refined (2) pose's MSE.

    ``model`` may be wrapped (DDP, a DeepSpeed engine); ``prepare`` casts inputs the way the
    wrapper needs (bf16 engines). Parts stay on the device (``total``).
    """
    inner = getattr(model, "module", model)
    image = prepare(batch["image"]) if inner.use_image else None
    out = model(prepare(batch["pose_2d"]), None, image)
    loss = mse_loss(out["coarse" if stage == 1 else "refined"].float(), batch["pose_3d"])
    return loss, {"total": loss.detach()}


def warm_start_refined(model: ImageLift) -> None:
    """Stage 2 starts its refined head as a copy of the trained coarse head, so it begins near
    the coarse answer instead of from a random head (the paper does not say how it initialises
    the head; with short budgets a random one leaves stage 2 behind stage 1)."""
    model.refined_head.load_state_dict(model.stage1.head.state_dict())


def train_stage(model: ImageLift, stage: int, batches: Iterator[Batch], steps: int, lr: float = 1e-3,
                lr_decay: float = 0.9, decay_every: int = 0, grad_clip: float = 0.0,
                log: Optional[Callable[[str], None]] = None, log_every: int = 50,
                warm_start: bool = True) -> list[float]:
    """Train ``stage`` (1: coarse, 2: refined with stage 1 frozen) for ``steps`` Adam steps;
    lr × ``lr_decay`` every ``decay_every`` steps (0 = constant). Returns the loss per step.

    ``warm_start`` (stage 2): :func:`warm_start_refined`.
    """
    model.set_stage(stage).train()
    if stage == 2 and warm_start:
        warm_start_refined(model)
    params = model.stage_parameters()
    opt = torch.optim.Adam(params, lr=lr)
    losses, t0 = [], time.time()
    for step in range(steps):
        loss, _ = stage_loss(model, next(batches), stage)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if decay_every and (step + 1) % decay_every == 0:
            for g in opt.param_groups:
                g["lr"] *= lr_decay
        losses.append(float(loss.detach()))
        if log and ((step + 1) % log_every == 0 or step + 1 == steps):
            log(f"stage {stage} step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.4f} "
                f"({time.time() - t0:.0f}s)")
    return losses


@torch.no_grad()
def evaluate(model: ImageLift, batches: Iterable[Batch], radius: float = 30.0,
             prepare: Callable[[torch.Tensor], torch.Tensor] = _identity) -> dict[str, float]:
    """MPJPE / P-MPJPE (mm) of every output, and for image models the background-attention
    share of each stage-1 layer (``bg_layer{1,2,3}``) and of uniform attention (``bg_uniform``).
    ``prepare`` casts inputs as the weights need (bf16)."""
    model.eval()
    preds: dict[str, list] = {}
    targets, shares, uniform = [], [], []
    for b in batches:
        out = model(prepare(b["pose_2d"]), None, prepare(b["image"]) if model.use_image else None,
                    return_attention=model.use_image)
        out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
        for k in ("coarse", "refined"):
            if k in out:
                preds.setdefault(k, []).append(out[k][:, 0])
        targets.append(b["pose_3d"][:, 0])
        if model.use_image:
            centres = model.patch_centres
            shares.append(torch.stack([background_attention_share(out["attention"][:, i], b["keypoints_crop"],
                                                                   centres, radius) for i in range(3)], 1))
            uniform.append(background_fraction(b["keypoints_crop"], centres, radius))
    target = torch.cat(targets) * 1000
    res: dict[str, float] = {}
    for k, v in preds.items():
        p = torch.cat(v) * 1000
        res[f"{k}_mpjpe"] = float(mpjpe(p, target))
        res[f"{k}_p_mpjpe"] = float(p_mpjpe(p, target))
    if shares:
        s = torch.cat(shares).mean(0)
        res.update(bg_layer1=float(s[0]), bg_layer2=float(s[1]), bg_layer3=float(s[2]),
                   bg_uniform=float(torch.cat(uniform).mean()))
    return res


# ----------------------------------------------------------------------------- config-driven runs


def image_data_settings(cfg: Any) -> dict[str, Any]:
    d = dict(source="render", labels=[], cameras=2, frame_step=8, max_frames=0, padding=1.25)
    d.update(cfg.model.extra.get("image_data") or {})
    return d


def crop_size(cfg: Any) -> tuple[int, int]:
    return int(cfg.model.extra.get("image_height", 256)), int(cfg.model.extra.get("image_width", 192))


def folder_batches(labels: Sequence[str], cfg: Any, shuffle: bool, seed: int) -> Callable[[], Iterator[Batch]]:
    """A factory of Ray Data streams over image folders (one pass per call)."""
    from raypose.data.images import image_dataset, iter_image_batches, read_image_labels

    items = [it for path in labels for it in read_image_labels(path)]
    settings = image_data_settings(cfg)

    def make() -> Iterator[Batch]:
        ds = image_dataset(items, crop_size(cfg), settings["padding"], cfg.data.batch_size)
        if shuffle:
            ds = ds.random_shuffle(seed=seed)
        return iter_image_batches(ds, cfg.data.batch_size, drop_last=shuffle)

    return make


def lift_stage(cfg: Any) -> int:
    """The stage a config trains (``model.extra.lift_stage``, default 1)."""
    return int(cfg.model.extra.get("lift_stage", 1))


def build_model(cfg: Any, stage: int) -> ImageLift:
    from raypose.models import build_from_config

    cfg = cfg.with_overrides({"model.extra.lift_stage": stage})
    return build_from_config(cfg, "finetune")


def load_stage1(model: ImageLift, init: str, s3_endpoint: str = "") -> None:
    """Copy the stage-1 weights of ``init`` into ``model``: a raypose checkpoint directory
    (local or s3://, what ``raypose image-lift`` writes now) or an older ``stage1.pt`` file
    (``{model, config, stage, metrics}``). Refuses a checkpoint of another model or size."""
    from raypose.checkpoints import load_state

    if Path(init).is_file():
        state = torch.load(init, map_location="cpu", weights_only=False)
        state = state["model"] if isinstance(state, dict) and "model" in state else state
    else:
        state = load_state(init, s3_endpoint)[0]
    stage1 = {k: v for k, v in state.items() if k.startswith("stage1.")}
    missing, unexpected = model.load_state_dict(stage1, strict=False)
    missing_s1 = [k for k in missing if k.startswith("stage1.")]
    if not stage1 or unexpected or missing_s1:
        raise ValueError(f"{init} is not a stage-1 checkpoint of this model: missing {missing_s1[:5]}, "
                         f"unexpected {unexpected[:5]}")


def render_kwargs(cfg: Any) -> dict[str, Any]:
    """:func:`render_split`'s settings from a config (crop size, cameras, frames, mocap file)."""
    settings = image_data_settings(cfg)
    return dict(crop_size=crop_size(cfg), cameras=settings["cameras"], frame_step=settings["frame_step"],
                max_frames=settings["max_frames"], mocap_path=cfg.data.sources[0].path)


def render_share(cfg: Any, rank: int, world_size: int) -> dict[str, np.ndarray]:
    """This worker's training crops, the same on every call (a restarted worker renders the
    same share): with at least one subject per worker, rank r renders subjects r, r + W, …
    (a generator seeded by (seed, r)); with fewer, every rank renders all of them with the same
    seed and keeps rows r, r + W, …. Ranks never share a crop."""
    subjects = list(cfg.data.train_subjects)
    if not subjects:
        raise ValueError("data.train_subjects is empty: nothing to render for Lifting by Image")
    seed = int(cfg.train.seed)
    if len(subjects) >= world_size:
        return render_split(subjects[rank::world_size], np.random.default_rng([seed, rank]), **render_kwargs(cfg))
    every = render_split(subjects, np.random.default_rng(seed), **render_kwargs(cfg))
    return {k: v[rank::world_size] for k, v in every.items()}


def render_test(cfg: Any) -> Optional[dict[str, np.ndarray]]:
    """Crops of ``data.test_subjects`` (None without any); seed + 1 as the study's test split."""
    if not cfg.data.test_subjects:
        return None
    return render_split(cfg.data.test_subjects, np.random.default_rng(int(cfg.train.seed) + 1), **render_kwargs(cfg))


def attention_radius(cfg: Any) -> float:
    """The paper's 30-px keypoint circles are in 256-px-high crops: scaled with the crop."""
    return 30.0 * crop_size(cfg)[0] / 256
