"""Progress of a transfer on a terminal or a log: ``ProgressDisplay`` and ``human`` byte counts.

A bar redrawn in place when the stream is a terminal; plain lines otherwise (every ``interval``
seconds and every tenth of the job), so piped output and CI logs stay readable. The ``flytestore``
command and ``examples/bulk_copy.py`` both use it.
"""

from __future__ import annotations

import shutil
import time
from typing import TextIO

from .transfer import Progress

__all__ = ["ProgressDisplay", "human"]


def human(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressDisplay:
    """A progress bar redrawn in place on a terminal; plain periodic lines on anything else.

    Feed it ``update`` directly, or pass it as the ``progress`` callback of ``copy_many``/``sync``
    (``expected`` stands in for the total until the listing of the source is done).
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        tty: bool,
        expected: int | None = None,
        interval: float = 1.0,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream
        self.tty = tty
        self.expected = expected
        self.interval = interval
        self.started = time.perf_counter()
        self.last_shown = 0.0
        self.last_step = -1
        self.drawn = False

    def __call__(self, progress: Progress) -> None:
        total = progress.objects_total if progress.objects_total is not None else self.expected
        self.update(progress.objects_done, total, progress.bytes_done, progress.failures)

    def update(self, done: int, total: int | None, nbytes: int, failures: int = 0) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        final = total is not None and done >= total
        if self.tty:
            if final or now - self.last_shown >= 0.1:
                self._draw(self._bar(done, total, nbytes, failures, now))
                self.last_shown = now
            return
        step = done * 10 // total if total else -1  # tenths of the job
        if final or step > self.last_step or now - self.last_shown >= self.interval:
            self.stream.write(self._line(done, total, nbytes, failures, now) + "\n")
            self.stream.flush()
            self.last_shown, self.last_step = now, step

    def _rates(self, done: int, nbytes: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        return f"{done / elapsed:,.0f} objects/s, {human(nbytes / elapsed)}/s"

    def _line(self, done: int, total: int | None, nbytes: int, failures: int, now: float) -> str:
        of = f"/{total}" if total is not None else ""
        pct = f" ({100 * done // total}%)" if total else ""
        failed = f", {failures} failed" if failures else ""
        return f"{self.label}: {done}{of} objects{pct}, {human(nbytes)}{failed}, {self._rates(done, nbytes, now)}"

    def _bar(self, done: int, total: int | None, nbytes: int, failures: int, now: float) -> str:
        tail = f" {done}/{total if total is not None else '?'} {human(nbytes)} {self._rates(done, nbytes, now)}"
        if failures:
            tail += f" {failures} failed"
        width = max(10, min(40, shutil.get_terminal_size().columns - len(self.label) - len(tail) - 10))
        filled = width * done // total if total else 0
        pct = f"{100 * done // total:3d}%" if total else "  ?%"
        return f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {pct}{tail}"

    def _draw(self, text: str) -> None:
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
