"""Reading checkpoints: rebuild a model (evaluation, inference, ``finetune --init``) from a
checkpoint directory, local or s3://, without the training package.

Why here, below both ``raypose/train/`` and ``raypose/infer.py``: inference must not depend on
the training package (nor Ray Train); the writer, :mod:`raypose.train.checkpoint`, uses these
names for the files it writes. A directory holds ``model.pt`` (plain fp32 ``state_dict``),
``meta.pt`` (stage, progress, world size and the config as JSON text) and ``config.json``.
An exported model (:func:`export_lifter`) may hold fp16 weights or int8 weights with per-row
scales; :func:`load_state` hands back fp32 either way.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from raypose import config as config_mod
from raypose.config import Config
from raypose.errors import RayposeDataError

MODEL_FILE = "model.pt"
META_FILE = "meta.pt"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
WEIGHT_PRECISIONS = ("fp32", "fp16", "int8")
INT8_SCALE_SUFFIX = ".__int8_row_scale__"
INT8_MIN_NUMEL = 4096     # smaller tensors (biases, norms) stay fp16: too small to matter in size


def safe_load(path: str | Path, device: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and primitive containers only.

    A missing, truncated or corrupt file is a :class:`RayposeDataError` naming it (torch's own
    message — "PytorchStreamReader failed reading zip archive" — names no file).
    """
    path = Path(path)
    if not path.is_file():
        raise RayposeDataError(path, "checkpoint file not found")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # zip/pickle/unpickler errors all mean a damaged file
        raise RayposeDataError(path, f"unreadable checkpoint file, truncated or corrupt "
                                     f"({type(e).__name__}: {e})") from None


def _known_keys(values: dict[str, Any], cls: type = Config, where: str = "") -> tuple[dict[str, Any], list[str]]:
    """``values`` without keys this version's config dataclasses lack (and which they were)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out, dropped = {}, []
    for k, v in values.items():
        if k not in hints:
            dropped.append(f"{where}{k}")
        elif isinstance(v, dict) and dataclasses.is_dataclass(hints[k]):
            out[k], more = _known_keys(v, hints[k], f"{where}{k}.")
            dropped += more
        else:
            out[k] = v
    return out, dropped


def config_from_json(text: str) -> Config:
    """The checkpoint's config; keys a newer/older raypose no longer knows are dropped, loudly."""
    values = json.loads(text)
    try:
        return config_mod.from_dict(values)
    except Exception:
        kept, dropped = _known_keys(values)
        if not dropped:
            raise
        import warnings

        warnings.warn(f"checkpoint config keys unknown to this raypose were ignored: {dropped}")
        return config_mod.from_dict(kept)


def read_meta(directory: str | Path) -> dict[str, Any]:
    """``meta.pt`` with its config rebuilt (``progress`` stays the saved dict)."""
    path = Path(directory) / META_FILE
    meta = safe_load(path)
    if not isinstance(meta, dict) or "config_json" not in meta:
        raise RayposeDataError(path, "not a raypose checkpoint meta file (no config_json)")
    meta["config"] = config_from_json(meta["config_json"])
    return meta


def latest_checkpoint(storage_path: str = "", stage: Optional[str] = None,
                      exclude_models: Sequence[str] = ()) -> Optional[str]:
    """The newest raypose checkpoint directory under a local storage root (default
    ``~/ray_results``, Ray's), optionally of one ``stage`` and not of a model named in
    ``exclude_models``; None when there is none."""
    root = Path(os.path.expanduser(storage_path or "~/ray_results"))
    if storage_path.startswith("s3://") or not root.is_dir():
        return None
    found = []
    for meta in root.glob("*/checkpoint_*/" + META_FILE):
        try:
            saved = safe_load(meta)
            if stage is not None and saved.get("stage") != stage:
                continue
            if exclude_models and json.loads(saved["config_json"])["model"]["name"] in exclude_models:
                continue
            found.append((meta.stat().st_mtime, str(meta.parent)))
        except Exception:  # a foreign or half-deleted directory
            continue
    return max(found)[1] if found else None


#: Models whose checkpoints do not lift 2D alone (Lifting by Image needs the image crops).
NEEDS_IMAGES = ("image_lift",)


def latest_lifter(storage_path: str = "") -> str:
    """``--checkpoint latest``: the newest fine-tuning checkpoint that lifts 2D keypoints alone
    (not a pretraining one, not Lifting by Image, which needs images); an error saying where it
    looked when there is none."""
    found = latest_checkpoint(storage_path, stage="finetune", exclude_models=NEEDS_IMAGES)
    if found is None:
        where = storage_path or "~/ray_results"
        raise RayposeDataError(where, "--checkpoint latest: no fine-tuning checkpoint of a 2D lifter "
                                      "here; run `raypose finetune` first or pass --storage-path")
    return found


def s3_filesystem(s3_endpoint: str = "") -> Any:
    """A pyarrow S3 filesystem at ``s3_endpoint`` (else $RAYPOSE_S3_ENDPOINT / $AWS_ENDPOINT_URL)."""
    import pyarrow.fs as pafs

    endpoint = s3_endpoint or os.environ.get("RAYPOSE_S3_ENDPOINT", "") or os.environ.get("AWS_ENDPOINT_URL", "")
    return pafs.S3FileSystem(endpoint_override=endpoint or None)


def upload_file(local: str | Path, uri: str, s3_endpoint: str = "") -> None:
    """Copy one local file to an ``s3://`` URI (a run's log or curves beside its checkpoints)."""
    with s3_filesystem(s3_endpoint).open_output_stream(uri[len("s3://"):]) as f:
        f.write(Path(local).read_bytes())


def newest_checkpoint_in_run(run: str, s3_endpoint: str = "") -> str:
    """The checkpoint directory with the highest epoch in a run directory (local or s3://);
    ``run`` itself when it is a checkpoint directory."""
    if run.startswith("s3://"):
        import pyarrow.fs as pafs

        fs, root = s3_filesystem(s3_endpoint), run[len("s3://"):].rstrip("/")
        if fs.get_file_info(f"{root}/{META_FILE}").type == pafs.FileType.File:
            return run
        names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
                 if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]
    else:
        root = os.path.expanduser(run)
        if (Path(root) / META_FILE).is_file():
            return run
        names = [p.parent.name for p in Path(root).glob(f"checkpoint_*/{META_FILE}")]
    if not names:
        raise RayposeDataError(run, "neither a checkpoint nor a run directory holding checkpoint_* folders")
    return f"{run.rstrip('/')}/{max(names)}"


def run_history(run: str, s3_endpoint: str = "") -> tuple[str, list[dict[str, Any]]]:
    """(stage, per-epoch history: loss, validation metric, lr, samples/s) of a training run, read
    from its newest checkpoint (which carries every epoch before it)."""
    local, tmp = local_copy(newest_checkpoint_in_run(run, s3_endpoint), s3_endpoint)
    try:
        meta = read_meta(local)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return str(meta.get("stage", "")), list(meta.get("progress", {}).get("history", []))


def local_copy(uri: str, s3_endpoint: str = "") -> tuple[Path, Optional[tempfile.TemporaryDirectory]]:
    """A local directory holding the checkpoint at ``uri`` (downloaded for s3://)."""
    if uri.startswith("s3://"):
        import pyarrow.fs as pafs

        fs = s3_filesystem(s3_endpoint)
        tmp = tempfile.TemporaryDirectory(prefix="raypose-ckpt-")
        pafs.copy_files(uri[len("s3://"):].rstrip("/"), tmp.name, source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return Path(tmp.name), tmp
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return Path(uri), None


def load_state(path_or_uri: str, s3_endpoint: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model state_dict, meta) of a checkpoint directory, local or s3://."""
    local, tmp = local_copy(str(path_or_uri), s3_endpoint)
    try:
        if not (local / MODEL_FILE).is_file():
            raise RayposeDataError(str(path_or_uri), f"not a raypose checkpoint (no {MODEL_FILE})")
        return dequantize_state(safe_load(local / MODEL_FILE)), read_meta(local)
    finally:
        if tmp is not None:
            tmp.cleanup()


def load_model(path_or_uri: str, s3_endpoint: str = "", stage: Optional[str] = None
               ) -> tuple[nn.Module, Config]:
    """Rebuild the model saved at ``path_or_uri`` (a checkpoint dir, local or s3://), eval mode.

    ``stage`` defaults to the stage the checkpoint was trained in.
    """
    return _model_from(*load_state(path_or_uri, s3_endpoint), stage)


def _model_from(state: dict[str, torch.Tensor], meta: dict[str, Any], stage: Optional[str] = None
                ) -> tuple[nn.Module, Config]:
    """The model of a loaded checkpoint (:func:`load_state`'s result), eval mode."""
    from raypose.models import build_from_config

    cfg = meta["config"]
    model = build_from_config(cfg, stage or meta["stage"])
    model.load_state_dict(state)
    return model.eval(), cfg


def load_encoder(path_or_uri: str, s3_endpoint: str = "") -> dict[str, torch.Tensor]:
    """The encoder tensors of a (pretraining) checkpoint, for a lifting model's ``load_pretrained``."""
    model, _ = load_model(path_or_uri, s3_endpoint)
    if hasattr(model, "encoder_state_dict"):
        return model.encoder_state_dict()
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}


def quantize_state(state: dict[str, torch.Tensor], precision: str) -> dict[str, torch.Tensor]:
    """``state`` stored at ``precision``: ``fp16`` halves every float tensor; ``int8`` keeps each
    weight matrix (≥ ``INT8_MIN_NUMEL`` values) as int8 with one fp32 scale per output row
    (symmetric, max-abs), everything else fp16 — a quarter of the fp32 size, and per-row scales
    keep the rounding error at ≤ 0.4 % of each row's largest weight."""
    if precision not in WEIGHT_PRECISIONS:
        raise ValueError(f"weight precision {precision!r}: expected one of {WEIGHT_PRECISIONS}")
    if precision == "fp32":
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not value.is_floating_point():
            out[name] = value
        elif precision == "int8" and value.dim() >= 2 and value.numel() >= INT8_MIN_NUMEL:
            rows = value.float().reshape(value.shape[0], -1)
            scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            out[name] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(value.shape)
            out[name + INT8_SCALE_SUFFIX] = scale
        else:
            out[name] = value.half()
    return out


def dequantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fp32 ``state_dict`` of a state written by :func:`quantize_state` (unchanged when it
    holds no int8 weights; fp16 tensors are cast when loaded into fp32 parameters)."""
    if not any(k.endswith(INT8_SCALE_SUFFIX) for k in state):
        return state
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if name.endswith(INT8_SCALE_SUFFIX):
            continue
        scale = state.get(name + INT8_SCALE_SUFFIX)
        if scale is not None:
            rows = value.float().reshape(value.shape[0], -1) * scale.float()[:, None]
            value = rows.reshape(value.shape)
        out[name] = value
    return out


def export_lifter(path_or_uri: str, out_dir: str | Path, precision: str = "fp16",
                  s3_endpoint: str = "") -> Path:
    """A lean copy of a fine-tuning checkpoint for inference and shipping: the model's weights at
    ``precision`` (see :func:`quantize_state`; loaded back into fp32 parameters) and its config,
    no optimizer or RNG state. Refuses pretraining checkpoints (they do not lift)."""
    state, meta = load_state(path_or_uri, s3_endpoint)
    if meta.get("stage") != "finetune":
        raise RayposeDataError(str(path_or_uri), f"is a {meta.get('stage')!r} checkpoint; only "
                                                 "fine-tuning (lifting) checkpoints are exported")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(quantize_state(state, precision), out / MODEL_FILE)
    text = json.dumps(meta["config"].to_dict(), indent=1)
    torch.save({"format": FORMAT_VERSION, "stage": "finetune", "progress": meta.get("progress", {}),
                "world_size": 1, "strategy": "ddp", "weights": precision, "config_json": text},
               out / META_FILE)
    (out / CONFIG_FILE).write_text(text)
    return out


#: The raypose config inside an exported program (``torch.export.save``'s extra files).
PROGRAM_CONFIG = "raypose_config.json"


def export_program(path_or_uri: str, out_path: str | Path, s3_endpoint: str = "") -> Path:
    """The lifter of a fine-tuning checkpoint as a ``torch.export`` program (``.pt2``): graph and
    fp32 weights in one file, for serving without raypose's model code — ``torch.export.load(p)
    .module()`` in Python, or AOTInductor / ExecuTorch ahead of time. The batch dimension is
    dynamic; inputs are raypose's (N, F, 17, 2) normalised 2D and (N, F, 17) missing-joint mask,
    the output the model's dict ('centre', and 'multi' where it has one). The config travels
    inside (:data:`PROGRAM_CONFIG`) so :func:`load_program` knows the window and normalisation."""
    state, meta = load_state(path_or_uri, s3_endpoint)
    if meta.get("stage") != "finetune":
        raise RayposeDataError(str(path_or_uri), f"is a {meta.get('stage')!r} checkpoint; only "
                                                 "fine-tuning (lifting) checkpoints are exported")
    model, cfg = _model_from(state, meta, "finetune")   # read once, not again by load_model
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(lifter_program(model, cfg.data.num_frames), out,
                      extra_files={PROGRAM_CONFIG: json.dumps(cfg.to_dict())})
    return out


def lifter_program(model: nn.Module, num_frames: int) -> Any:
    """``torch.export`` of a lifting model (eval mode) with a dynamic batch dimension."""
    from raypose.skeleton import NUM_JOINTS

    example = (torch.zeros(2, num_frames, NUM_JOINTS, 2),
               torch.zeros(2, num_frames, NUM_JOINTS, dtype=torch.bool))
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    return torch.export.export(model.eval(), example, dynamic_shapes=({0: batch}, {0: batch}))


def load_program(path: str | Path) -> tuple[nn.Module, Config]:
    """(callable module, config) of a program written by :func:`export_program`."""
    extra = {PROGRAM_CONFIG: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as e:  # a truncated or foreign file: say which and why
        raise RayposeDataError(str(path), f"not a loadable torch.export program: {e}") from e
    if not extra[PROGRAM_CONFIG]:
        raise RayposeDataError(str(path), f"has no {PROGRAM_CONFIG}: not exported by raypose export")
    return program.module(), config_from_json(extra[PROGRAM_CONFIG])
