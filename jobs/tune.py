"""Ray Tune search of masking ratios and loss weights: `raypose tune` as a script,
for `ray job submit -- python jobs/tune.py`.

`python jobs/tune.py --help` shows the options and examples (raypose/commands/tune.py).
"""
from __future__ import annotations

import _common
from raypose.commands import tune as command


def main(argv: list[str] | None = None):
    return _common.main(command, "tune.py", argv)


if __name__ == "__main__":
    _common.run(command, "tune.py")
