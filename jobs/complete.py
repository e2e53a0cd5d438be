"""Partial 3D with missing joints or frames → completed 3D: `raypose complete` as a script,
for `ray job submit -- python jobs/complete.py`.

`python jobs/complete.py --help` shows the options and examples (raypose/commands/complete.py).
"""
from __future__ import annotations

import _common
from raypose.commands import complete as command


def main(argv: list[str] | None = None):
    return _common.main(command, "complete.py", argv)


if __name__ == "__main__":
    _common.run(command, "complete.py")
