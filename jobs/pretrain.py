"""Masked pose pretraining (stage I) on Ray Train: `raypose pretrain` as a script,
for `ray job submit -- python jobs/pretrain.py`.

`python jobs/pretrain.py --help` shows the options and examples (raypose/commands/pretrain.py).
"""
from __future__ import annotations

import _common
from raypose.commands import pretrain as command


def main(argv: list[str] | None = None):
    return _common.main(command, "pretrain.py", argv)


if __name__ == "__main__":
    _common.run(command, "pretrain.py")
