"""Progress of a transfer on a terminal or a log: ``ProgressDisplay``, ``human`` byte counts and
``count`` ("1 object", "2 objects").

On a terminal, one line redrawn in place, never wider than the terminal (fields are dropped,
least useful first, and the bar shrinks, so nothing wraps even at 40 columns); on anything else,
plain lines (every ``interval`` seconds and every tenth of the job), so piped output and CI logs
stay readable. Each shows objects done of the total (as soon as the job knows it), bytes,
objects/s, bytes/s and the time left. The ``flytestore`` command and ``examples/bulk_copy.py`` use it.

Hand-drawn rather than rich or tqdm: the display needs two rates (objects and bytes) and a total
that arrives late, which tqdm's one counter does not model; rich would add a dependency and
~100 ms of import time to every command, for one line of output.
"""

from __future__ import annotations

import os
import time
from typing import TextIO

from .transfer import Progress

__all__ = ["ProgressDisplay", "count", "human"]

#: Seconds between redraws on a terminal.
REDRAW = 0.1


def human(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def count(n: int, noun: str = "object") -> str:
    """``1 object``, ``2 objects``, ``0 objects``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _columns(stream: TextIO) -> int:
    """The terminal's width: ``COLUMNS`` when set (as shutil does), else the stream's terminal."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80


class ProgressDisplay:
    """A progress line redrawn in place on a terminal; plain periodic lines on anything else.

    Feed it ``update`` directly, or pass it as the ``progress`` callback of ``copy_many``/``sync``
    (``expected`` stands in for the total until the job knows it).
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
        show_bytes: bool = True,
    ) -> None:
        self.label = label
        #: False for jobs that move no bytes (deletes): no byte count or rate.
        self.show_bytes = show_bytes
        self.enabled = enabled
        self.stream = stream
        self.tty = tty
        self.expected = expected
        self.interval = interval
        self.started = time.perf_counter()
        self.last_shown = 0.0
        self.last_step = -1
        self.drawn = False
        self._last: tuple[int, int | None, int, int] | None = None
        #: The transfer phase shown (``Progress.phase``): "list", "copy" or "delete".
        self.phase: str | None = None
        self._shown: tuple[int, int | None, int, int] | None = None

    def __call__(self, progress: Progress) -> None:
        """A transfer's ``Progress``: each phase (listing, copying, deleting) on its own line."""
        if self.phase is None:
            self.phase = progress.phase  # the first phase started with the display
        elif progress.phase != self.phase:
            self.start_phase(progress.phase)
        if progress.phase == "list":
            self.update(progress.listed, None, progress.bytes_total)
            return
        total = progress.objects_total if progress.objects_total is not None else self.expected
        self.update(progress.objects_done, total, progress.bytes_done, progress.failures)

    def start_phase(self, phase: str) -> None:
        """End the line of the phase before (on a terminal) and start counting afresh."""
        self.finish()
        self.phase = phase
        self.started = time.perf_counter()
        self.last_shown, self.last_step = 0.0, -1
        self._last = self._shown = None

    def update(self, done: int, total: int | None, nbytes: int, failures: int = 0) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        final = total is not None and done >= total
        self._last = (done, total, nbytes, failures)
        if self.tty:
            if final or now - self.last_shown >= REDRAW:
                self._draw(self.bar(done, total, nbytes, failures, now, _columns(self.stream) - 1))
                self.last_shown, self._shown = now, self._last
            return
        step = done * 10 // total if total else -1  # tenths of the job
        if final or step > self.last_step or now - self.last_shown >= self.interval:
            self.stream.write(self.line(done, total, nbytes, failures, now) + "\n")
            self.stream.flush()
            self.last_shown, self.last_step = now, step

    # -- what is shown ----------------------------------------------------------------------------

    @property
    def _label(self) -> str:
        return {"list": f"{self.label} listing", "delete": f"{self.label} deleting"}.get(self.phase or "", self.label)

    def _fields(self, done: int, total: int | None, nbytes: int, failures: int, now: float) -> dict[str, str]:
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        bytes_shown = self.show_bytes and self.phase != "delete"
        fields = {
            "objects": f"{done:,}/{total:,}" if total is not None else f"{done:,}/?",
            "bytes": human(nbytes) if bytes_shown else "",
            "rate": f"{rate:,.0f} obj/s",
            "bytes_rate": f"{human(nbytes / elapsed)}/s" if bytes_shown and self.phase != "list" else "",
            "eta": "",
            "failed": f"{failures:,} failed" if failures else "",
        }
        if total is not None and done < total and rate > 0:
            fields["eta"] = f"ETA {_duration((total - done) / rate)}"
        elif total is not None and done >= total:
            fields["eta"] = f"in {_duration(elapsed)}"
        return fields

    def line(self, done: int, total: int | None, nbytes: int, failures: int, now: float) -> str:
        """A plain log line: ``cp: 12/2,000 objects (0%), 1.2 MiB, 10 obj/s, 1.0 MiB/s, ETA 3:18``."""
        f = self._fields(done, total, nbytes, failures, now)
        of = f"/{total:,}" if total is not None else ""
        noun = "object" if (total if total is not None else done) == 1 else "objects"
        pct = f" ({100 * done // total}%)" if total else ""
        parts = [
            f"{self._label}: {done:,}{of} {noun}{pct}",
            f["bytes"],
            f["rate"],
            f["bytes_rate"],
            f["failed"],
            f["eta"],
        ]
        return ", ".join(part for part in parts if part)

    def bar(self, done: int, total: int | None, nbytes: int, failures: int, now: float, width: int) -> str:
        """One terminal line at most ``width`` characters wide: the least useful fields go first
        (bytes/s, objects/s, bytes, ETA), then the bar shrinks away."""
        f = self._fields(done, total, nbytes, failures, now)
        pct = f"{100 * done // total:3d}%" if total else "  ?%"
        # In the order shown; dropped from the end of `droppable` until the line fits.
        shown = ["objects", "failed", "bytes", "rate", "bytes_rate", "eta"]
        droppable = ["eta", "bytes", "rate", "bytes_rate"]
        while True:
            tail = " ".join(f[name] for name in shown if f[name])
            fixed = f"{self._label} {pct} " + (tail and f" {tail}")
            room = width - len(fixed) - 2  # the bar's brackets
            if room >= 10 or not droppable:
                break
            shown.remove(droppable.pop())
        if room >= 3:
            size = min(room, 30)
            filled = size * done // total if total else 0
            text = f"{self._label} {pct} [{'#' * filled}{'.' * (size - filled)}]" + (tail and f" {tail}")
        else:
            text = f"{self._label} {pct}" + (tail and f" {tail}")
        return text[: max(width, 1)]

    def _draw(self, text: str) -> None:
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        """End the display: the last state drawn in full, then a newline on a terminal."""
        if self.enabled and self.tty and self._last is not None and self._last != self._shown:
            self._draw(self.bar(*self._last, time.perf_counter(), _columns(self.stream) - 1))
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
