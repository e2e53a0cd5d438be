"""Raw pose data → a sharded Parquet store: `raypose prepare` as a script,
for `ray job submit -- python jobs/prepare_data.py`.

`python jobs/prepare_data.py --help` shows the options and examples (raypose/commands/prepare.py).
"""
from __future__ import annotations

import _common
from raypose.commands import prepare as command
from raypose.commands.prepare import parse_source  # noqa: F401  (FORMAT:PATH[:NAME], for callers)


def main(argv: list[str] | None = None):
    return _common.main(command, "prepare_data.py", argv)


if __name__ == "__main__":
    _common.run(command, "prepare_data.py")
