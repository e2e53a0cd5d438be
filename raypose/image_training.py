"""Two-stage progressive training of the image-lifting model (plain torch loop).

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


def train_stage(model: ImageLift, stage: int, batches: Iterator[Batch], steps: int, lr: float = 1e-3,
                lr_decay: float = 0.9, decay_every: int = 0, grad_clip: float = 0.0,
                log: Optional[Callable[[str], None]] = None, log_every: int = 50,
                warm_start: bool = True) -> list[float]:
    """Train ``stage`` (1: coarse, 2: refined with stage 1 frozen) for ``steps`` Adam steps;
    lr × ``lr_decay`` every ``decay_every`` steps (0 = constant). Returns the loss per step.

    ``warm_start`` (stage 2) starts the refined head as a copy of the trained coarse head, so
    stage 2 begins near the coarse answer instead of from a random head (the paper does not say
    how it initialises the head; with short budgets a random one leaves stage 2 behind stage 1).
    """
    model.set_stage(stage).train()
    if stage == 2 and warm_start:
        model.refined_head.load_state_dict(model.stage1.head.state_dict())
    params = model.stage_parameters()
    opt = torch.optim.Adam(params, lr=lr)
    key = "coarse" if stage == 1 else "refined"
    losses, t0 = [], time.time()
    for step in range(steps):
        b = next(batches)
        out = model(b["pose_2d"], None, b["image"] if model.use_image else None)
        loss = mse_loss(out[key], b["pose_3d"])
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
def evaluate(model: ImageLift, batches: Iterable[Batch], radius: float = 30.0) -> dict[str, float]:
    """MPJPE / P-MPJPE (mm) of every output, and for image models the background-attention
    share of each stage-1 layer (``bg_layer{1,2,3}``) and of uniform attention (``bg_uniform``)."""
    model.eval()
    preds: dict[str, list] = {}
    targets, shares, uniform = [], [], []
    for b in batches:
        out = model(b["pose_2d"], None, b["image"] if model.use_image else None,
                    return_attention=model.use_image)
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


def _endless(make: Callable[[], Iterator[Batch]]) -> Iterator[Batch]:
    while True:
        yield from make()


def build_model(cfg: Any, stage: int) -> ImageLift:
    from raypose.models import build_from_config

    cfg = cfg.with_overrides({"model.extra.lift_stage": stage})
    return build_from_config(cfg, "finetune")


def run(cfg: Any, stage: int, init: str = "", out_dir: str = "", log: Callable[[str], None] = print) -> str:
    """Train one stage from a config (``jobs/train_image_lift.py``); stage 2 starts from the
    stage-1 checkpoint ``init``. Saves ``{model, config, stage, metrics}`` and returns its path.

    Steps: ``train.epochs × train.steps_per_epoch``; lr ``optim.lr``, × ``optim.lr_decay`` per
    epoch. Test metrics on ``data.test_subjects`` (render) or the folder labels of
    ``image_data.test_labels``.
    """
    torch.manual_seed(cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    model = build_model(cfg, stage)
    if stage == 2:
        if not init:
            raise ValueError("stage 2 needs the stage-1 checkpoint (--init)")
        state = torch.load(init, map_location="cpu", weights_only=False)
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
        if unexpected or any(k.startswith("stage1.") for k in missing):
            raise ValueError(f"{init} is not a stage-1 checkpoint of this model: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
    settings = image_data_settings(cfg)
    steps_per_epoch = cfg.train.steps_per_epoch or 100
    if settings["source"] == "folder":
        train_iter = _endless(folder_batches(settings["labels"], cfg, True, cfg.train.seed))
        test = folder_batches(settings.get("test_labels", []), cfg, False, 0) if settings.get("test_labels") else None
    else:
        kw = dict(crop_size=crop_size(cfg), cameras=settings["cameras"], frame_step=settings["frame_step"],
                  max_frames=settings["max_frames"], mocap_path=cfg.data.sources[0].path)
        train_arr = render_split(cfg.data.train_subjects, rng, **kw)
        log(f"rendered {len(train_arr['image'])} training crops")
        train_iter = random_batches(train_arr, cfg.data.batch_size, rng)
        test = None
        if cfg.data.test_subjects:
            test_arr = render_split(cfg.data.test_subjects, np.random.default_rng(cfg.train.seed + 1), **kw)
            test = lambda: ordered_batches(test_arr, cfg.data.batch_size)  # noqa: E731
    train_stage(model, stage, train_iter, cfg.train.epochs * steps_per_epoch, cfg.optim.lr,
                cfg.optim.lr_decay, steps_per_epoch, cfg.optim.grad_clip, log)
    # the paper's 30-px circles are in 256-px-high crops: scale them with the crop
    metrics = evaluate(model, test(), radius=30.0 * crop_size(cfg)[0] / 256) if test is not None else {}
    if metrics:
        log("test " + " ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    out = Path(out_dir or cfg.train.storage_path or "runs") / (cfg.train.run_name or "image_lift")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"stage{stage}.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "stage": stage, "metrics": metrics}, path)
    return str(path)
