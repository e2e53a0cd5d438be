"""What every job shares: the repo on sys.path (plain `python jobs/x.py`, or under
`ray job submit --working-dir .`), the --config/--set pair, and the final `checkpoint:` line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
