"""2D detections or a video → 3D per person: ``python jobs/infer.py --input … --checkpoint …``.

Thin wrapper over :func:`raypose.infer.main` (also ``raypose infer …``). Example:
    python jobs/infer.py --input ../shared/data/sports2d_demo/detections_coco17.json \
        --checkpoint runs/finetune/checkpoint --out out/demo.npz --json --render out/demo.mp4
"""
from __future__ import annotations

import sys

from raypose.infer import main

if __name__ == "__main__":
    main(sys.argv[1:])
