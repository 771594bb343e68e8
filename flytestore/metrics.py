"""Metrics: a ``Scope`` over prometheus_client with Flyte's metric names (docs/flyte-compatibility.md#metrics).

Why not prometheus_client's own Counter/Summary/Histogram: each observation takes a lock and
costs 0.5-2.7 µs, several times the whole cost of a 1 KiB in-memory operation. Here a metric is
a few plain attribute updates on the event loop's thread, and one collector per scope reads them
at scrape time. Increments from several threads at once may race (asyncio code runs on one).

Names: a scope ``flyte:storage`` and metric ``cache_hit`` export as ``flyte:storage:cache_hit``
(prometheus_client appends ``_total`` to counters). A *stopwatch* is a summary ``<name>_ms``
(count and sum in milliseconds; prometheus_client exports no quantiles); a *timer* adds a
histogram ``<name>`` in seconds with Flyte's buckets. Two stores given scopes of the same name on
the same registry share their metrics, as ``RefreshConfig`` keeps them in Go.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TypeVar

from prometheus_client.core import (
    REGISTRY,
    CollectorRegistry,
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from .errors import InvalidArgumentError

__all__ = ["Counter", "FailureCounter", "Scope", "StopWatch", "Timer"]

#: Flyte's HistogramStopWatch buckets, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counter:
    """A monotonically increasing count."""

    __slots__ = ("description", "name", "value")

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def _collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.description, value=self.value)


class FailureCounter:
    """A counter labelled ``failure_type`` (the error's code, else ``Generic``)."""

    __slots__ = ("description", "name", "values")

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.values: dict[str, float] = {}

    def inc(self, failure_type: str = "Generic") -> None:
        values = self.values
        values[failure_type] = values.get(failure_type, 0.0) + 1.0

    def total(self) -> float:
        return sum(self.values.values())

    def _collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.description, labels=["failure_type"])
        for label, value in sorted(self.values.items()):
            family.add_metric([label], value)
        yield family
        yield CounterMetricFamily(f"{self.name}_unlabeled", self.description, value=self.total())


class StopWatch:
    """Durations as a summary ``<name>_ms`` (count, sum in ms). Use ``observe(seconds)`` or ``time()``."""

    __slots__ = ("count", "description", "name", "sum_ms")

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.count = 0
        self.sum_ms = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum_ms += seconds * 1000.0

    def time(self) -> _Timing:
        return _Timing(self)

    def _collect(self) -> Iterator[Metric]:
        yield SummaryMetricFamily(f"{self.name}_ms", self.description, count_value=self.count, sum_value=self.sum_ms)


class Timer(StopWatch):
    """A stopwatch plus a histogram ``<name>`` in seconds with Flyte's buckets."""

    __slots__ = ("buckets", "sum_s")

    def __init__(self, name: str, description: str) -> None:
        super().__init__(name, description)
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum_ms += seconds * 1000.0
        self.sum_s += seconds
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def _collect(self) -> Iterator[Metric]:
        yield from super()._collect()
        cumulative = 0
        points: list[tuple[str, float]] = []
        for bound, n in zip((*BUCKETS, math.inf), self.buckets, strict=True):
            cumulative += n
            points.append(("+Inf" if bound == math.inf else repr(bound), float(cumulative)))
        yield HistogramMetricFamily(self.name, self.description, buckets=points, sum_value=self.sum_s)


class _Timing:
    __slots__ = ("_start", "_watch")

    def __init__(self, watch: StopWatch) -> None:
        self._watch = watch
        self._start = 0.0

    def __enter__(self) -> _Timing:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._watch.observe(time.perf_counter() - self._start)


_Metric = Counter | FailureCounter | StopWatch
_M = TypeVar("_M", Counter, FailureCounter, StopWatch, Timer)


class _ScopeCollector(Collector):
    """Every metric created under one root scope name on one registry."""

    def __init__(self) -> None:
        self.metrics: dict[str, _Metric] = {}

    def collect(self) -> Iterator[Metric]:
        for metric in list(self.metrics.values()):
            yield from metric._collect()


_collectors: dict[tuple[int, str], tuple[CollectorRegistry, _ScopeCollector]] = {}
_collectors_lock = threading.Lock()


def _collector_for(registry: CollectorRegistry, root: str) -> _ScopeCollector:
    key = (id(registry), root)
    with _collectors_lock:
        found = _collectors.get(key)
        if found is not None and found[0] is registry:
            return found[1]
        collector = _ScopeCollector()
        registry.register(collector)
        _collectors[key] = (registry, collector)
        return collector


class Scope:
    """A metric namespace, like Flyte's ``promutils.Scope``: names are joined with ``:``.

    ``Scope("flyte:storage")`` registers on prometheus_client's default registry;
    pass ``registry=CollectorRegistry()`` for an isolated one (tests, several apps).
    """

    def __init__(self, name: str = "flyte:storage", *, registry: CollectorRegistry | None = None) -> None:
        self.name = name.strip(":")
        self.registry = registry if registry is not None else REGISTRY
        root = self.name.split(":", 1)[0]
        self._collector = _collector_for(self.registry, root)

    def scope(self, name: str) -> Scope:
        """A sub-scope ``<self>:<name>`` sharing this scope's registry."""
        return Scope(f"{self.name}:{name.strip(':')}", registry=self.registry)

    def _full(self, name: str) -> str:
        return f"{self.name}:{name}" if self.name else name

    def _get(self, cls: type[_M], name: str, description: str) -> _M:
        full = self._full(name)
        metric = self._collector.metrics.setdefault(full, cls(full, description))
        if type(metric) is not cls:
            raise InvalidArgumentError(f"metric {full} already exists as a {type(metric).__name__}")
        return metric

    def counter(self, name: str, description: str = "") -> Counter:
        return self._get(Counter, name, description)

    def failure_counter(self, name: str, description: str = "") -> FailureCounter:
        return self._get(FailureCounter, name, description)

    def stopwatch(self, name: str, description: str = "") -> StopWatch:
        return self._get(StopWatch, name, description)

    def timer(self, name: str, description: str = "") -> Timer:
        return self._get(Timer, name, description)

    def __repr__(self) -> str:
        return f"Scope({self.name!r})"
