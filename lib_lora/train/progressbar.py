"""A text progress bar for training jobs on a terminal (``python -m lib_lora train``).

:func:`render` turns a :class:`~lib_lora.train.runner.JobStatus` into one line;
:class:`ProgressPrinter` is an ``on_status`` callback that redraws that line in place on a terminal
(``\\r``) and prints a line now and then when the output is a file or a pipe (logs of headless runs).
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

from lib_lora.train.runner import CANCELLED, CANCELLING, FAILED, QUEUED, SUCCEEDED, JobStatus


def format_duration(seconds: float | None) -> str:
    """``4:05``, ``1:02:03``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def format_rate(rate: float | None) -> str:
    """Steps per second as people read them: ``2.31 it/s`` when fast, ``1.45 s/it`` when slow."""
    if not rate or rate <= 0:
        return "? it/s"
    return f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it"


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def render(status: JobStatus, width: int = 80, *, unicode: bool = True) -> str:
    """One line, at most ``width`` characters."""
    full, empty = ("█", "░") if unicode else ("#", "-")
    if status.state == SUCCEEDED:
        took = None
        if status.started_at and status.ended_at:
            took = status.ended_at - status.started_at
        line = f"done in {format_duration(took)}: {status.output_path or ''}"
    elif status.state in (FAILED, CANCELLED):
        line = status.message or status.state
    elif status.state == QUEUED:
        line = "queued: " + (status.message or "waiting for the GPU")
    elif not status.total or (status.step == status.step_offset and status.task):
        line = f"starting: {status.task or status.message or '…'}"
    else:
        pct = status.fraction
        parts = [f"{int(pct * 100):3d}%", f"{status.step}/{status.total}", format_rate(status.rate),
                 f"ETA {format_duration(status.eta_seconds)}"]
        if status.loss is not None:
            parts.append(f"loss {status.loss:.4g}")
        if status.epoch and status.epochs:
            parts.append(f"epoch {status.epoch}/{status.epochs}")
        if status.state == CANCELLING:
            parts.append("cancelling…")
        tail = "  ".join(parts)
        bar_width = max(5, min(30, width - len(tail) - 3))
        filled = int(round(pct * bar_width))
        line = f"[{full * filled}{empty * (bar_width - filled)}] {tail}"
    if len(line) > width:
        line = line[: max(1, width - 1)] + "…"
    return line


class ProgressPrinter:
    """``on_status`` callback drawing :func:`render` on ``stream`` (thread-safe)."""

    def __init__(self, stream: TextIO | None = None, *, width: int | None = None,
                 line_interval: float = 30.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width or max(40, shutil.get_terminal_size((100, 20)).columns - 1)
        self.unicode = _can_encode(self.stream, "█░…")
        self.line_interval = line_interval
        self._lock = threading.Lock()
        self._last_line = ""
        self._last_print = 0.0
        self._last_state = ""
        self._last_decile = -1
        self._drawn = False

    def __call__(self, status: JobStatus) -> None:
        line = render(status, self.width, unicode=self.unicode)
        if not self.unicode:
            line = line.replace("…", "...")
        with self._lock:
            if self.tty:
                if line != self._last_line:
                    self.stream.write("\r" + line.ljust(len(self._last_line)))
                    self._drawn = True
                if status.done:
                    self.stream.write("\n")
                    self._drawn = False
                self.stream.flush()
            else:
                decile = int(status.fraction * 10) if status.total else -1
                now = time.monotonic()
                if (status.state != self._last_state or decile != self._last_decile
                        or now - self._last_print >= self.line_interval) and line != self._last_line:
                    self.stream.write(line + "\n")
                    self.stream.flush()
                    self._last_print = now
                self._last_state, self._last_decile = status.state, decile
            self._last_line = line

    def log_line(self, text: str) -> None:
        """Print a log line above the bar (then the bar is redrawn on the next status)."""
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write("\r" + " " * len(self._last_line) + "\r")
                self._last_line = ""
                self._drawn = False
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False
