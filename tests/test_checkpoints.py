"""raypose.checkpoints: exported models at fp32 / fp16 / int8 load back as fp32 and lift alike."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raypose import checkpoints, infer
from raypose.skeleton import to_h36m


def test_int8_rows_round_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(300, 200) * torch.logspace(-3, 1, 300)[:, None]   # rows of very different scale
    state = {"w": w, "b": torch.randn(300), "steps": torch.tensor(7)}
    q = checkpoints.quantize_state(state, "int8")
    assert q["w"].dtype == torch.int8 and q["b"].dtype == torch.float16 and q["steps"].dtype == torch.int64
    back = checkpoints.dequantize_state(q)
    assert set(back) == set(state) and back["w"].dtype == torch.float32
    step = w.abs().amax(dim=1, keepdim=True) / 127
    assert ((back["w"] - w).abs() <= step / 2 + 1e-7).all()


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="int4"):
        checkpoints.quantize_state({"w": torch.zeros(2, 2)}, "int4")


def test_exports_load_as_fp32_and_lift_real_detections_alike(shared_data, tmp_path):
    """Re-export the shipped model at each precision and lift real detections with each: fp32
    reproduces it exactly, fp16 and int8 are about a half and a quarter of fp32's size and move
    the lifted joints by a few millimetres at most."""
    original = infer.load_checkpoint(str(infer.SHIPPED_CHECKPOINT))
    with np.load(shared_data / "pose2sim_demo.npz") as d:                 # real detections, camera 0
        keypoints = to_h36m(d["keypoints_coco17"][0], "coco17")
        width, height = d["image_size"][0]
    reference = infer.lift_sequence(original.model, keypoints, width, height, original.num_frames)
    sizes, shifts = {}, {}
    for precision in ("fp32", "fp16", "int8"):
        out = checkpoints.export_lifter(str(infer.SHIPPED_CHECKPOINT), tmp_path / precision, precision=precision)
        assert checkpoints.read_meta(out)["stage"] == "finetune"
        lifter = infer.load_checkpoint(str(out))
        assert all(p.dtype == torch.float32 for p in lifter.model.parameters())
        sizes[precision] = (out / checkpoints.MODEL_FILE).stat().st_size
        lifted = infer.lift_sequence(lifter.model, keypoints, width, height, lifter.num_frames)
        shifts[precision] = float(np.linalg.norm(lifted - reference, axis=-1).mean())
    assert 0.45 < sizes["fp16"] / sizes["fp32"] < 0.55 and 0.22 < sizes["int8"] / sizes["fp32"] < 0.3
    assert shifts["fp32"] < 1e-6                    # the shipped weights are exact in fp32
    assert shifts["fp16"] < 0.005 and shifts["int8"] < 0.005, shifts   # metres; bench/accuracy.py --precision scores it


@pytest.mark.parametrize("name", ["pstmo_s", "mpm", "aptpose", "baseline"])
def test_exported_programs_compute_what_the_models_compute(name):
    """Each lifter family through torch.export (the serving path): the same outputs as the
    eager model at batch sizes other than the one it was traced with."""
    from raypose import models

    torch.manual_seed(0)
    size = dict(hidden=64) if name == "baseline" else dict(dim=32, ffn_dim=64, heads=2, depth=1)
    model = models.build(name, num_frames=27, **size).eval()
    program = checkpoints.lifter_program(model, 27).module()
    for batch in (1, 5):
        x = torch.randn(batch, 27, 17, 2) * 0.3
        missing = torch.rand(batch, 27, 17) < 0.1
        with torch.inference_mode():
            want, got = model(x, missing), program(x, missing)
        assert set(got) == set(want)
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=1e-5)


def test_raypose_export_program_lifts_real_detections_as_the_checkpoint_does(shared_data, tmp_path):
    """`raypose export --format program` of the shipped model, then `infer.load_checkpoint` of
    the .pt2: the real detections lift to the same 3D as from the checkpoint; a file that is
    not a program is refused by name."""
    from raypose.cli import main as raypose

    out = tmp_path / "lifter.pt2"
    raypose(["export", "--checkpoint", str(infer.SHIPPED_CHECKPOINT), "--out", str(out),
                  "--format", "program"])
    with np.load(shared_data / "pose2sim_demo.npz") as d:
        keypoints = to_h36m(d["keypoints_coco17"][0], "coco17")
        width, height = d["image_size"][0]
    lifted = {}
    for which, path in (("checkpoint", str(infer.SHIPPED_CHECKPOINT)), ("program", str(out))):
        lifter = infer.load_checkpoint(path)
        lifted[which] = infer.lift_sequence(lifter.model, keypoints, width, height, lifter.num_frames)
    assert np.abs(lifted["program"] - lifted["checkpoint"]).max() < 1e-5
    bogus = tmp_path / "bogus.pt2"
    bogus.write_bytes(b"not a program")
    with pytest.raises(Exception, match="bogus.pt2.*torch.export"):
        infer.load_checkpoint(str(bogus))


def test_latest_is_the_newest_2d_lifter(tmp_path):
    """`--checkpoint latest` skips pretraining and Lifting-by-Image checkpoints (which need image
    crops), even when they are newer, and says where it looked when nothing fits."""
    import json
    import os

    from raypose import config
    from raypose.errors import RayposeDataError

    def meta(run: str, stage: str, model: str, mtime: float) -> str:
        d = tmp_path / run / "checkpoint_000001"
        d.mkdir(parents=True)
        cfg = config.Config().with_overrides({"model.name": model})
        torch.save({"stage": stage, "config_json": json.dumps(cfg.to_dict())}, d / checkpoints.META_FILE)
        os.utime(d / checkpoints.META_FILE, (mtime, mtime))
        return str(d)

    with pytest.raises(RayposeDataError, match="no fine-tuning checkpoint of a 2D lifter"):
        checkpoints.latest_lifter(str(tmp_path))
    lifter = meta("lift", "finetune", "pstmo_s", 1000.0)
    meta("pre", "pretrain", "pstmo_s", 2000.0)
    meta("image", "finetune", "image_lift", 3000.0)
    assert checkpoints.latest_lifter(str(tmp_path)) == lifter
    assert checkpoints.latest_checkpoint(str(tmp_path)).startswith(str(tmp_path / "image"))
