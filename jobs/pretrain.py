"""Masked pose pretraining (stage I) on Ray Train.

    python jobs/pretrain.py                                   # embedded mocap, local Ray
    python jobs/pretrain.py --config configs/pstmo_smoke.yaml --set train.num_workers=2
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/pretrain.py --config configs/pstmo_s_smoke.yaml

Prints one line per epoch (loss, validation loss, samples/s, ETA) and, last,
`checkpoint: <path or URI>` — what `jobs/finetune.py --init` takes.
"""
from __future__ import annotations

import _common


def main(argv: list[str] | None = None) -> str:
    args = _common.parser(__doc__).parse_args(argv)
    cfg = _common.config.from_cli(args)
    from raypose.train.run import pretrain

    uri = pretrain(cfg)
    _common.finish(uri)
    return uri


if __name__ == "__main__":
    _common.run(main)
