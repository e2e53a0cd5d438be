"""Evaluate a fine-tuned checkpoint (default: the shipped model): `raypose evaluate` as a script,
for `ray job submit -- python jobs/evaluate.py`.

`python jobs/evaluate.py --help` shows the options and examples (raypose/commands/evaluate.py).
"""
from __future__ import annotations

import _common
from raypose.commands import evaluate as command


def main(argv: list[str] | None = None):
    return _common.main(command, "evaluate.py", argv)


if __name__ == "__main__":
    _common.run(command, "evaluate.py")
