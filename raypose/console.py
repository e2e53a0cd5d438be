"""The driver's console during training: what a person wants to see, everything in a log file.

A training job's terminal used to carry Ray's internal chatter (execution plans, controller and
placement-group notices, deprecation warnings) around the few lines that matter. Inside
:class:`QuietConsole` every line the driver prints or receives from Ray's actors goes, whole,
to the run's ``console.log``; the terminal shows only raypose's own lines (the epoch summaries,
``curves:``, ``checkpoint:``, errors) and Ray warnings or errors that a person may need to act on
(a hang's "Cluster resources are not enough…"), minus a short list of known-harmless notices.
On a terminal, the workers' progress pings (:data:`PROGRESS_TAG`, sent at most once a second
when :data:`PINGS_ENV` is set) drive a live tqdm bar per epoch; without one (``ray job
submit``, a pipe) they are dropped and the per-epoch lines remain. ``verbose`` passes everything.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional, TextIO

PROGRESS_TAG = "@@raypose-progress "
PINGS_ENV = "RAYPOSE_PROGRESS_PINGS"

#: raypose's own lines (after any "(Actor pid=…)" prefix): always shown
OURS = re.compile(r"^(\[(pretrain|finetune|tune|image-lift s[12])\] |checkpoint: |curves: |error: |warning: |run: |data: |"
                  r"model: |workers: |log: |best_config: |table: |plot: )")
#: lines from Ray or libraries a person may have to act on
ALERT = re.compile(r"\b(WARNING|WARN|ERROR|CRITICAL|FATAL|Traceback|Error|Exception)\b")
#: alerts known to be harmless here (NOTES.md "Noise you can ignore"); still in the log
HARMLESS = tuple(re.compile(p) for p in (
    r"Token authentication is enabled",
    r"PreemptionWatcher.*constructor arguments",
    r"DeprecationWarning",
    r"worker processes? .* expected",
    r"Failed to query Ray Train Controller actor state",
    r"Progress bars disabled",
    # said once while a fresh local Ray registers its CPUs; a real shortage is the "Cluster
    # resources are not enough…" warning (kept) and train.run.check_cpu_budget refuses it up front
    r"The Ray cluster currently does not have any available CPUs",
))
#: Ray's housekeeping actors: nothing they say is for the person at the terminal (their failures
#: are Ray's; e.g. the placement-group cleaner's state-API thread dies when two Ray instances
#: share the machine), so they go to the log only
HOUSEKEEPING_ACTORS = ("PlacementGroupCleaner",)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ACTOR_PREFIX = re.compile(r"^\(([\w.]+) pid=\d+(?:, ip=[^)]*)?\)\s?")


def clean(line: str) -> str:
    """``line`` without colour codes and Ray's "(RayTrainWorker pid=123)" prefix."""
    return ACTOR_PREFIX.sub("", ANSI.sub("", line)).rstrip()


def shown(line: str) -> bool:
    """Whether a cleaned line belongs on the quiet terminal."""
    if OURS.match(line):
        return True
    return bool(ALERT.search(line)) and not any(p.search(line) for p in HARMLESS)


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(v for v in logging.root.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


class _Stream:
    """A text stream that hands complete lines to the console (sys.stdout / sys.stderr)."""

    def __init__(self, console: "QuietConsole", terminal: TextIO):
        self.console, self.terminal, self.pending = console, terminal, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.console.line(line, self.terminal)
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def fileno(self) -> int:              # subprocess / faulthandler write to the real descriptor
        return self.terminal.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.terminal, "encoding", "utf-8")


class QuietConsole:
    """``with QuietConsole(log_path): …`` — see the module docstring."""

    def __init__(self, log_path: str | Path, verbose: bool = False, live: Optional[bool] = None):
        self.log_path = Path(log_path)
        self.verbose = verbose
        self.live = sys.stderr.isatty() if live is None else live
        self._bar: Any = None
        self._bar_key: tuple = ()
        self._last: tuple[str, float] = ("", 0.0)
        self._saved: tuple[TextIO, TextIO] | None = None
        self._env: Optional[str] = None

    def __enter__(self) -> "QuietConsole":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8", buffering=1)
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _Stream(self, sys.stdout), _Stream(self, sys.stderr)
        # loggers set up earlier (Ray's driver logger) hold the real streams: point them here too
        self._handlers = [h for h in _stream_handlers() if h.stream in self._saved]
        for h in self._handlers:
            h.stream = sys.stdout if h.stream is self._saved[0] else sys.stderr
        self._env = os.environ.get(PINGS_ENV)
        os.environ[PINGS_ENV] = "1" if self.live else "0"
        return self

    def __exit__(self, *exc: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _Stream) and stream.pending:
                self.line(stream.pending, stream.terminal)
        self._close_bar()
        for h in self._handlers:
            h.stream = h.stream.terminal
        sys.stdout, sys.stderr = self._saved
        if self._env is None:
            os.environ.pop(PINGS_ENV, None)
        else:
            os.environ[PINGS_ENV] = self._env
        self._log.close()

    def line(self, raw: str, terminal: TextIO) -> None:
        actor = ACTOR_PREFIX.match(ANSI.sub("", raw))
        text = clean(raw)
        if text.startswith(PROGRESS_TAG):
            self._progress(json.loads(text[len(PROGRESS_TAG):]))
            return
        self._log.write(raw + "\n")
        if self.verbose:
            self._close_bar()
            terminal.write(raw + "\n")
            return
        now = time.monotonic()
        housekeeping = actor is not None and actor.group(1) in HOUSEKEEPING_ACTORS
        if not text or housekeeping or not shown(text) or (text == self._last[0] and now - self._last[1] < 5.0):
            return                  # chatter (in the log), or a worker line Ray delivered twice
        self._last = (text, now)
        self._close_bar()
        terminal.write(text + "\n")
        terminal.flush()

    def _progress(self, ping: dict[str, Any]) -> None:
        if not self.live:
            return
        from tqdm import tqdm

        key = (ping["stage"], ping["epoch"])
        if key != self._bar_key:
            self._close_bar()
            self._bar = tqdm(total=ping.get("steps"), file=self._saved[1], leave=False, unit="step",
                             mininterval=0, dynamic_ncols=True, disable=False,  # live decides
                             desc=f"[{ping['stage']}] epoch {ping['epoch']}/{ping['epochs']}")
            self._bar_key = key
        self._bar.set_postfix(loss=f"{ping['loss']:.4f}", samples_s=f"{ping['samples_per_s']:.0f}", refresh=False)
        self._bar.update(ping["step"] - self._bar.n)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._bar_key = None, ()
