"""What ``raypose <command>`` and ``python jobs/<command>.py`` run: one module per command.

Each module has a docstring (its ``--help`` text, with examples), ``add_arguments(parser)`` and
``run(args)``; :func:`raypose.cli.main` and the thin ``jobs/*.py`` scripts (kept for
``ray job submit -- python jobs/….py``) both go through :func:`main`, so the CLI and the jobs
are one code path.
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Any, Optional, Sequence

from raypose import config


def parser(module: ModuleType, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The command's parser: its docstring as the help text, ``--config`` / ``--set`` when the
    command reads a config, then its own options."""
    p = argparse.ArgumentParser(prog=prog, description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if getattr(module, "TAKES_CONFIG", True):
        config.add_cli_arguments(p)
    module.add_arguments(p)
    return p


def main(module: ModuleType, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> Any:
    """Parse ``argv`` for ``module`` and run it."""
    args = parser(module, prog).parse_args(list(sys.argv[1:] if argv is None else argv))
    return module.run(args)


def finish(uri: str) -> None:
    """Stop Ray first so no late worker log follows, then print the checkpoint line last."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    print(f"checkpoint: {uri}", flush=True)


def exit_on_error(module: ModuleType, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> Any:
    """:func:`main`, but a configuration or data error ends the process with its message and
    exit code 2 (no traceback to dig through, never a zero exit after training on nothing)."""
    from raypose.errors import RayposeError

    try:
        return main(module, argv, prog)
    except RayposeError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
