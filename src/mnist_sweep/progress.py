"""Terminal progress for long work: a bar over trials, a line per epoch.

On a TTY the bar redraws in place; elsewhere (CI logs, files) each update is a plain line so
logs stay readable. ``quiet`` prints nothing but the final summary the CLI writes itself.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Reports a sweep: which trial runs, its epochs, the best so far and an ETA."""

    def __init__(self, *, total: int | None, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.total = total
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.done = 0
        self.best: float | None = None
        self._line_open = False

    def _bar(self) -> str:
        if not self.total:
            return f"{self.done} trials"
        width = 20
        filled = int(width * min(self.done, self.total) / self.total)
        return f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"

    def _eta(self) -> str:
        if not self.total or not self.done:
            return "ETA --:--"
        per_trial = (time.monotonic() - self.started) / self.done
        return f"ETA {_fmt_seconds(per_trial * max(self.total - self.done, 0))}"

    def _emit(self, text: str, *, transient: bool) -> None:
        if self.quiet:
            return
        if self.tty and transient:
            self.stream.write("\r\x1b[2K" + text)
            self._line_open = True
        else:
            if self._line_open:
                self.stream.write("\r\x1b[2K")
                self._line_open = False
            self.stream.write(text + "\n")
        self.stream.flush()

    def _status(self) -> str:
        best = "best --" if self.best is None else f"best {self.best:.4f}"
        return f"{self._bar()}  {best}  {self._eta()}"

    def trial_started(self, number: int, summary: str) -> None:
        self._emit(f"{self._status()}  trial {number}: {summary}", transient=False)

    def epoch(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        text = (
            f"  trial {number} epoch {epoch}/{epochs}: loss {metrics.get('loss', float('nan')):.4f} "
            f"acc {metrics.get('accuracy', float('nan')):.4f} val_loss {metrics.get('val_loss', float('nan')):.4f} "
            f"val_acc {metrics.get('val_accuracy', float('nan')):.4f} ({metrics.get('seconds', 0):.1f}s)"
        )
        self._emit(text, transient=True)

    def trial_finished(self, number: int, state: str, value: float | None, best: float | None, note: str = "") -> None:
        self.done += 1
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
