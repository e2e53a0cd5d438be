"""raypose.console: the quiet terminal shows raypose's lines and actionable alerts; the log
keeps every line; progress pings drive a bar on a terminal and vanish elsewhere."""
from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from raypose.console import PINGS_ENV, PROGRESS_TAG, QuietConsole, clean

CHATTER = [
    "2026-12-02 10:06:50,798\tINFO streaming_executor.py:216 -- Execution plan of Dataset train_1: "
    "InputDataBuffer[Input] -> OutputSplitter[split(1, equal=True)]",
    "\x1b[36m(PlacementGroupCleaner pid=5256)\x1b[0m Failed to query Ray Train Controller actor state. "
    "State API may be temporarily unavailable. Continuing to monitor.",
    "\x1b[36m(TrainController pid=5205)\x1b[0m Attempting to start training worker group of size 1",
    "\x1b[36m(DatasetManager pid=5370)\x1b[0m /x/execution_options.py:436: RayDeprecationWarning: "
    "`ExecutionOptions.exclude_resources` is deprecated",
    "2026-12-02 10:14:15,220\tWARNING authentication_token_setup.py:85 -- Token authentication is enabled",
    "\x1b[36m(PlacementGroupCleaner pid=6042)\x1b[0m Exception in thread PlacementGroupCleanerMonitor:",
    "\x1b[36m(PlacementGroupCleaner pid=6042)\x1b[0m Traceback (most recent call last):",
]
OURS = ["\x1b[36m(RayTrainWorker pid=5289)\x1b[0m [pretrain] epoch 1/3 step 40 loss 0.4958 val_loss 0.23",
        "checkpoint: /runs/x/checkpoint_epoch0002"]
ALERT = ("2026-12-02 10:20:00,000\tWARNING resource_manager.py:1 -- Cluster resources are not enough to "
         "run any task from TaskPoolMapOperator[MapBatches(_chunk_batch)]")


@pytest.fixture
def terminal():
    """Stand-in terminal streams, set in the test body (pytest re-points sys.stdout/stderr at
    its own capture between fixture set-up and the test call)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr

    def use():
        sys.stdout, sys.stderr = out, err
    yield out, err, use
    sys.stdout, sys.stderr = saved


def _ping(step: int, epoch: int = 1) -> str:
    return PROGRESS_TAG + json.dumps({"stage": "finetune", "epoch": epoch, "epochs": 2, "step": step,
                                      "steps": 10, "loss": 0.1, "samples_per_s": 900.0})


def test_the_terminal_shows_our_lines_and_alerts_the_log_keeps_everything(terminal, tmp_path):
    out, err, use = terminal
    use()
    with QuietConsole(tmp_path / "run" / "console.log", live=False):
        for line in CHATTER:
            print(line, file=sys.stderr)
        print(OURS[0], file=sys.stderr)
        print(OURS[0], file=sys.stderr)            # Ray delivered a worker line twice
        print(_ping(3))                             # no terminal: dropped
        print(ALERT, file=sys.stderr)
        print(OURS[1])
    assert err.getvalue().splitlines() == [clean(OURS[0]), clean(ALERT)]     # once, prefix dropped
    assert out.getvalue().splitlines() == [OURS[1]]
    log = (tmp_path / "run" / "console.log").read_text()
    assert all(line in log for line in CHATTER + OURS + [ALERT]) and PROGRESS_TAG not in log


def test_loggers_holding_the_real_stream_are_captured_too(terminal, tmp_path):
    _, err, use = terminal
    use()
    logger = logging.getLogger("raypose.test.driver")
    handler = logging.StreamHandler(sys.stderr)        # like Ray's driver logger, set up before
    logger.addHandler(handler)
    try:
        with QuietConsole(tmp_path / "console.log", live=False):
            logger.warning("Token authentication is enabled for this Ray cluster.")
            logger.warning("Started a local Ray instance.")
        assert err.getvalue() == "" and handler.stream is err
        assert "Started a local Ray instance." in (tmp_path / "console.log").read_text()
    finally:
        logger.removeHandler(handler)


def test_verbose_shows_everything(terminal, tmp_path):
    out, err, use = terminal
    use()
    with QuietConsole(tmp_path / "console.log", verbose=True, live=False):
        for line in CHATTER:
            print(line)
    assert out.getvalue().splitlines() == CHATTER


def test_pings_drive_a_live_bar_per_epoch_and_ask_the_workers_for_them(terminal, tmp_path, monkeypatch):
    import os

    out, err, use = terminal
    use()
    monkeypatch.delenv(PINGS_ENV, raising=False)
    with QuietConsole(tmp_path / "console.log", live=True):
        assert os.environ[PINGS_ENV] == "1"                    # inherited by a local Ray's workers
        for step in (2, 6, 10):
            print(_ping(step))
        print(_ping(4, epoch=2))
        print(OURS[0])
    assert PINGS_ENV not in os.environ
    bar = err.getvalue()
    assert "[finetune] epoch 1/2" in bar and "10/10" in bar and "[finetune] epoch 2/2" in bar
    assert out.getvalue().splitlines() == [clean(OURS[0])]
