"""Lifting throughput: frames/s of the P-STMO-S lifter, eager vs inference_mode vs torch.compile.

One output frame per clip, so frames/s = clips/s. Columns:
  eager      plain forward with autograd on (what a naive loop does)
  inference  forward under torch.inference_mode
  bf16       the same under bfloat16 autocast (`raypose infer --precision bf16`; fast on CPUs with
             AVX-512 BF16 / AMX and on GPUs, emulated and slow elsewhere)
  compile    torch.compile(model) under inference_mode (compile time reported separately)
  lift       raypose.infer.lift_sequence end to end (normalise, mask, window gather, batches)
The model is untrained (weights do not change the cost). Defaults are sized for a 2-core CPU
(≈1 min); on CPU torch.compile costs 30-80 s per shape, so it is opt-in there
(``--modes eager inference compile lift``) and on by default with ``--device cuda``.

    python bench/infer.py                      # CPU: 81/243 frames, batch 1/32
    python bench/infer.py --device cuda        # + compile, batch 1/32/256

Against the reference: ``--reference DIR`` (a local checkout of paTRICK-swk/P-STMO; its code is
imported from there, never copied here) adds a row per shape for the reference stage-II model
built the way its ``common/opt.py`` builds it (d 256, hidden 512, the same strides; ``--model
pstmo_s`` ↔ its default 3 layers, ``pstmo`` ↔ ``--layers 4``), timed under inference_mode,
and the ratio of every raypose column to it:

    python bench/infer.py --reference ~/src/P-STMO --batch-sizes 64 --threads 2 \
        --modes inference bf16 compile
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from raypose import models
from raypose.infer import lift_sequence
from raypose.viz import format_table

MODES = ("eager", "inference", "bf16", "compile", "lift")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], None], clips: int, device: torch.device, seconds: float,
          min_iters: int = 2) -> float:
    """Clips per second of ``step`` after one warm-up call, timed for ≥ ``seconds``."""
    step()
    _sync(device)
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < seconds:
        step()
        n += 1
    _sync(device)
    return clips * n / (time.perf_counter() - start)


def _fake_keypoints(t: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 17, 3) pixels + confidence in a 1000×1000 image (a random walk around the centre)."""
    xy = 500 + np.cumsum(rng.normal(0, 2, (t, 17, 2)), 0) + rng.normal(0, 80, (1, 17, 2))
    return np.concatenate([xy, rng.uniform(0.5, 1, (t, 17, 1))], -1).astype(np.float32)


def reference_model(source: str, model_name: str, frames: int) -> torch.nn.Module:
    """The P-STMO reference's stage-II ``Model`` from a local checkout of its repository, sized
    as raypose's ``model_name`` at ``frames``."""
    import importlib
    import sys
    from types import SimpleNamespace

    from raypose.models.blocks import default_strides

    if not (Path(source) / "model" / "stmo.py").is_file():
        raise SystemExit(f"--reference {source}: no model/stmo.py there (a checkout of paTRICK-swk/P-STMO)")
    if source not in sys.path:
        sys.path.insert(0, source)
    stmo = importlib.import_module("model.stmo")
    depth = len(models.build(model_name, num_frames=frames).encoder.tem.layers)
    args = SimpleNamespace(layers=depth, channel=256, d_hid=512, frames=frames,
                           stride_num=default_strides(frames), n_joints=17, out_joints=17)
    return stmo.Model(args)


def bench(model_name: str, frames: list[int], batch_sizes: list[int], modes: list[str],
          device: torch.device, seconds: float, flip: bool, seed: int = 0,
          reference: Optional[str] = None) -> list[dict]:
    rows = []
    rng = np.random.default_rng(seed)
    for f in frames:
        torch.manual_seed(seed)
        model = models.build(model_name, num_frames=f).to(device).eval()
        ref = reference_model(reference, model_name, f).to(device).eval() if reference else None
        compiled = torch.compile(model) if "compile" in modes else None
        for b in batch_sizes:
            row: dict = {"model": model_name, "frames": f, "batch": b}
            x = torch.randn(b, f, 17, 2, generator=torch.Generator().manual_seed(seed)).to(device) * 0.3
            missing = torch.zeros(b, f, 17, dtype=torch.bool, device=device)
            fwd = (lambda m: (lambda: models.flip_average(m, x, missing))) if flip else \
                  (lambda m: (lambda: m(x, missing)))
            if "eager" in modes:
                with torch.enable_grad():
                    row["eager f/s"] = _rate(fwd(model), b, device, seconds)
            if "inference" in modes:
                with torch.inference_mode():
                    row["inference f/s"] = _rate(fwd(model), b, device, seconds)
            if "bf16" in modes:
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                    row["bf16 f/s"] = _rate(fwd(model), b, device, seconds)
            if compiled is not None:
                with torch.inference_mode():
                    start = time.perf_counter()
                    fwd(compiled)()
                    _sync(device)
                    row["compile s"] = time.perf_counter() - start
                    row["compile f/s"] = _rate(fwd(compiled), b, device, seconds)
            if "lift" in modes:
                kp = _fake_keypoints(2 * b, rng)
                row["lift f/s"] = _rate(lambda: lift_sequence(model, kp, 1000, 1000, f, batch_size=b,
                                                              flip=flip, device=device),
                                        2 * b, device, seconds, min_iters=1)
            if ref is not None:
                # its input layout: (N, 2, F, J, 1); both of its outputs are computed, as it runs
                x_ref = x.permute(0, 3, 1, 2).unsqueeze(-1).contiguous()
                with torch.inference_mode():
                    row["ref f/s"] = _rate(lambda: ref(x_ref), b, device, seconds)
                for k in [k for k in row if k.endswith(" f/s") and k != "ref f/s"]:
                    row[k.replace(" f/s", "/ref")] = row[k] / row["ref f/s"]
            best = max((v for k, v in row.items() if k.endswith("f/s") and k != "ref f/s"), default=None)
            if best is not None and "eager f/s" in row:
                row["best/eager"] = best / row["eager f/s"]
            rows.append(row)
            table = format_table([row], floatfmt=".1f").splitlines()
            print("\n".join(table if len(rows) == 1 else table[-1:]), flush=True)
        del model, compiled, ref
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pstmo_s")
    p.add_argument("--frames", type=int, nargs="+", default=[81, 243])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help="default 1 32 on CPU, 1 32 256 on CUDA")
    p.add_argument("--modes", nargs="+", choices=MODES, default=None,
                   help="default eager inference lift on CPU, all on CUDA")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=1.0, help="minimum timed seconds per cell")
    p.add_argument("--flip", action="store_true", help="time flip-averaged lifting (2 passes)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="a local checkout of paTRICK-swk/P-STMO: time its model beside raypose's")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    batch_sizes = args.batch_sizes or ([1, 32, 256] if cuda else [1, 32])
    modes = args.modes or (list(MODES) if cuda else ["eager", "inference", "bf16", "lift"])
    print(f"# {args.model} on {torch.cuda.get_device_name(device) if cuda else 'CPU'} "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}, flip={args.flip}")
    rows = bench(args.model, args.frames, batch_sizes, modes, device, args.seconds, args.flip,
                 reference=args.reference)
    print()
    print(format_table(rows, floatfmt=".1f"))
    return rows


if __name__ == "__main__":
    main()
