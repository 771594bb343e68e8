"""Scope: Flyte metric names on prometheus_client, shared across stores, exported correctly."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from flytestore import Scope
from flytestore.errors import InvalidArgumentError


def test_names_are_joined_with_colons_and_exported() -> None:
    registry = CollectorRegistry()
    scope = Scope("flyte:storage", registry=registry)
    scope.counter("cache_hit").inc()
    scope.scope("copy").stopwatch("length").observe(0.002)
    scope.timer("write").observe(0.03)
    failures = scope.failure_counter("read_failure")
    failures.inc("NotFound")
    failures.inc("NotFound")
    failures.inc("Generic")
    value = registry.get_sample_value
    assert value("flyte:storage:cache_hit_total") == 1
    assert value("flyte:storage:copy:length_ms_count") == 1
    assert value("flyte:storage:copy:length_ms_sum") == pytest.approx(2.0)
    assert value("flyte:storage:write_bucket", {"le": "0.05"}) == 1
    assert value("flyte:storage:write_bucket", {"le": "0.025"}) == 0
    assert value("flyte:storage:write_bucket", {"le": "+Inf"}) == 1
    assert value("flyte:storage:read_failure_total", {"failure_type": "NotFound"}) == 2
    assert value("flyte:storage:read_failure_unlabeled_total") == 3
    text = generate_latest(registry).decode()
    assert "# TYPE flyte:storage:write histogram" in text


def test_same_name_is_shared_and_type_clash_is_an_error() -> None:
    registry = CollectorRegistry()
    a = Scope("flyte:storage", registry=registry).counter("x")
    b = Scope("flyte:storage", registry=registry).counter("x")
    assert a is b
    with pytest.raises(InvalidArgumentError, match="already exists"):
        Scope("flyte:storage", registry=registry).stopwatch("x")


def test_separate_registries_are_independent() -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    Scope("s", registry=one).counter("c").inc()
    assert two.get_sample_value("s:c_total") is None
    assert one.get_sample_value("s:c_total") == 1
