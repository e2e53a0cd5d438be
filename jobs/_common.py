"""What every job shares: the repo on sys.path (plain `python jobs/x.py`, or under
`ray job submit --working-dir .`), the --config/--set pair, and the final `checkpoint:` line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from raypose import config  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_cli_arguments(p)
    return p


def finish(uri: str) -> None:
    """Stop Ray first so no late worker log follows, then print the checkpoint line last."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    print(f"checkpoint: {uri}", flush=True)


def run(main: Callable[[], object]) -> None:
    """Run a job's ``main``; a configuration or data error ends it with its message and exit
    code 2 (no traceback to dig through, and never a zero exit after training on nothing)."""
    from raypose.errors import RayposeError

    try:
        main()
    except RayposeError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
