"""A fine-tuning checkpoint → a lean fp16 / int8 inference model: `raypose export` as a script,
for `ray job submit -- python jobs/export_model.py`.

`python jobs/export_model.py --help` shows the options and examples (raypose/commands/export.py).
"""
from __future__ import annotations

import _common
from raypose.commands import export as command


def main(argv: list[str] | None = None):
    return _common.main(command, "export_model.py", argv)


if __name__ == "__main__":
    _common.run(command, "export_model.py")
