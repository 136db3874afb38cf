"""Terminal progress for long work: a bar over trials, a bar over each trial's epochs.

On a TTY the epoch bar redraws in place (cut to the terminal's width, so it never wraps) and
each trial start and end stays as a line; elsewhere (CI logs, files, pipes) every update is a
plain line without control characters, so logs stay readable. ``quiet`` prints nothing: the
CLI writes the final summary itself.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import TextIO

BAR_WIDTH = 20
EPOCH_BAR_WIDTH = 10
CLEAR_LINE = "\r\x1b[2K"


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####.....]``: ``done`` of ``total`` as ``width`` characters (ASCII, so any log shows it)."""
    if total <= 0:
        return "[" + "." * width + "]"
    filled = int(width * min(max(done, 0), total) / total)
    return f"[{'#' * filled}{'.' * (width - filled)}]"


class Progress:
    """Reports a sweep: which trial runs, its epochs, the best so far and an ETA.

    ``done`` counts the study's finished trials, earlier runs included (a resumed study's bar
    starts where it stopped); the ETA uses only the trials this process finished.
    """

    def __init__(self, *, total: int | None, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.total = total
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.done = 0
        self.best: float | None = None
        self.finished_here = 0
        self._line_open = False

    def _bar(self) -> str:
        if not self.total:
            return f"{self.done} trials"
        return f"{bar(self.done, self.total)} {self.done}/{self.total}"

    def _eta(self) -> str:
        if not self.total or not self.finished_here:
            return "ETA --:--"
        per_trial = (time.monotonic() - self.started) / self.finished_here
        return f"ETA {_fmt_seconds(per_trial * max(self.total - self.done, 0))}"

    def _fit(self, text: str) -> str:
        width = shutil.get_terminal_size((120, 24)).columns - 1
        return text if len(text) <= width else text[: max(width - 3, 0)] + "..."

    def _emit(self, text: str, *, transient: bool) -> None:
        if self.quiet:
            return
        if self.tty and transient:
            self.stream.write(CLEAR_LINE + self._fit(text))
            self._line_open = True
        else:
            if self._line_open:
                self.stream.write(CLEAR_LINE)
                self._line_open = False
            self.stream.write(text + "\n")
        self.stream.flush()

    def _status(self) -> str:
        best = "best --" if self.best is None else f"best {self.best:.4f}"
        return f"{self._bar()}  {best}  {self._eta()}"

    def trial_started(self, number: int, summary: str) -> None:
        self._emit(f"{self._status()}  trial {number}: {summary}", transient=False)

    def epoch(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        """One finished epoch: redrawn in place on a TTY, one line each elsewhere."""

        def metric(key: str) -> str:
            value = metrics.get(key)
            return "-" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"

        text = (
            f"  trial {number} {bar(epoch, epochs, EPOCH_BAR_WIDTH)} epoch {epoch}/{epochs}: "
            f"loss {metric('loss')} acc {metric('accuracy')} val_loss {metric('val_loss')} "
            f"val_acc {metric('val_accuracy')} ({float(metrics.get('seconds', 0.0)):.1f}s)"
        )
        self._emit(text, transient=True)

    def trial_finished(self, number: int, state: str, value: float | None, best: float | None, note: str = "") -> None:
        self.done += 1
        self.finished_here += 1
        self.best = best
        shown = "" if value is None else f" value {value:.4f}"
        self._emit(f"  trial {number} {state}{shown}{(' - ' + note) if note else ''}", transient=False)

    def message(self, text: str) -> None:
        self._emit(text, transient=False)

    def close(self) -> None:
        if self._line_open and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False
