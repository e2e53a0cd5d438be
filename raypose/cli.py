"""``raypose <command> …``: one entry point; each command lives in its own module.

Commands register as (module, adder, runner) names so that ``raypose --help`` imports nothing
heavy, and another command is one line here.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

#: command → (module, function adding its arguments to a parser, function running parsed args)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "infer": ("raypose.infer", "add_infer_arguments", "infer_command",
              "2D detections or a video → 3D poses per person (npz/JSON/BVH, renders)"),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="raypose")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, _, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv:
        parser.print_help()
        return 2
    if argv[0] not in COMMANDS:
        parser.parse_args(argv)  # --help, or an error naming the unknown command
        return 2
    module_name, adder, runner, help_text = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    cmd = getattr(module, adder)(argparse.ArgumentParser(prog=f"raypose {argv[0]}", description=help_text))
    getattr(module, runner)(cmd.parse_args(argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
