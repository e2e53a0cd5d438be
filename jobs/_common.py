"""What every job shares: the repo on sys.path (plain `python jobs/x.py`, or under
`ray job submit --working-dir .`) and the hand-off to the command module it wraps — a job is
`raypose <command>` for `ray job submit`, the same code path (raypose/commands/)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from raypose import commands  # noqa: E402


def main(command: ModuleType, script: str, argv: Optional[Sequence[str]] = None) -> Any:
    """The command's result (tests and notebooks call a job's ``main(argv)``)."""
    return commands.main(command, argv, prog=f"python jobs/{script}")


def run(command: ModuleType, script: str) -> None:
    """``__main__``: a configuration or data error ends the job with its message and exit code 2."""
    commands.exit_on_error(command, None, prog=f"python jobs/{script}")
