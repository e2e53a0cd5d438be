"""Fine-tuning (stage II): 2D → 3D lifting on Ray Train: `raypose finetune` as a script,
for `ray job submit -- python jobs/finetune.py`.

`python jobs/finetune.py --help` shows the options and examples (raypose/commands/finetune.py).
"""
from __future__ import annotations

import _common
from raypose.commands import finetune as command


def main(argv: list[str] | None = None):
    return _common.main(command, "finetune.py", argv)


if __name__ == "__main__":
    _common.run(command, "finetune.py")
