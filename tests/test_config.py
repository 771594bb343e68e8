"""Config: Flyte's storage section, its key spellings, loaders, validation and secret masking."""

from __future__ import annotations

import dataclasses
import datetime
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flytestore.config import (
    KINDS,
    TYPES,
    CacheConfig,
    Config,
    HttpClientConfig,
    LimitsConfig,
    RedisConfig,
    SchemeConfig,
    SignedURLConfig,
    StowConfig,
    parse_duration,
)
from flytestore.errors import ConfigError

SECRET = "s3cr3t-Value-42"

FLYTE_YAML = f"""\
type: stow
container: my-bucket
enable-multicontainer: true
stow:
  kind: s3
  config:
    endpoint: http://127.0.0.1:9000
    auth_type: accesskey
    access_key_id: minio
    secret_key: {SECRET}
    disable_ssl: true
cache:
  max_size_mbs: 16
  target_gc_percent: 100
limits:
  maxDownloadMBs: 10
defaultHttpClient:
  headers:
    X-Team: [a, b]
    X-One: single
  timeout: 2s
  maxIdleConns: 10
  maxIdleConnsPerHost: 5
  maxConnsPerHost: 3
  idleConnTimeout: 1m30s
signedUrl:
  stowConfigOverride:
    endpoint: https://public.example.com
schemes:
  gs:
    kind: google
    config:
      project_id: proj
  redis:
    redis:
      addr: 127.0.0.1:6379
      password: {SECRET}
      db: 2
"""

SNAKE_YAML = f"""\
type: stow
container: my-bucket
enable_multicontainer: true
stow:
  kind: s3
  config:
    endpoint: http://127.0.0.1:9000
    auth_type: accesskey
    access_key_id: minio
    secret_key: {SECRET}
    disable_ssl: "true"
cache:
  max_size_mbs: 16
  target_gc_percent: 100
limits:
  max_download_mbs: 10
default_http_client:
  headers:
    X-Team: [a, b]
    X-One: [single]
  timeout: 2
  max_idle_conns: 10
  max_idle_conns_per_host: 5
  max_conns_per_host: 3
  idle_conn_timeout: 90
signed_url:
  stow_config_override:
    endpoint: https://public.example.com
schemes:
  GS:
    kind: google
    config:
      project_id: proj
  redis:
    redis:
      addr: 127.0.0.1:6379
      password: {SECRET}
      db: 2
"""


def _write(tmp_path: Path, text: str, name: str = "storage.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(**kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(kwargs)
    return info.value


# -- defaults ----------------------------------------------------------------------------------


def test_defaults_equal_go_default_config() -> None:
    config = Config(container="bucket")
    assert config.type == "stow"
    assert config.enable_multicontainer is False
    assert config.stow == StowConfig(kind="s3", config={"region": "us-east-1"})
    assert config.stow.kind_explicit is False
    assert config.cache == CacheConfig(max_size_mbs=0, target_gc_percent=0)
    assert config.limits == LimitsConfig(max_download_mbs=2)
    assert config.redis == RedisConfig(addr="", addrs=[], username="", password="", db=0)
    assert config.schemes == {}
    assert config.default_http_client == HttpClientConfig(
        headers={},
        timeout=0.0,
        max_idle_conns=1024,
        max_idle_conns_per_host=1024,
        max_conns_per_host=0,
        idle_conn_timeout=90.0,
    )
    assert config.signed_url == SignedURLConfig(stow_config_override={})
    assert config.local is None
    assert config.primary_kind() == "s3"
    assert config.primary_scheme() == "s3"
    assert config.backend_config() == {"region": "us-east-1"}


def test_default_construction_without_container_fails_like_go() -> None:
    with pytest.raises(ConfigError) as info:
        Config()
    assert info.value.field == "container"
    assert "initContainer is required even with `enable-multicontainer`" in str(info.value)


def test_section_defaults_are_not_shared() -> None:
    a, b = StowConfig(), StowConfig()
    a.config["x"] = "1"
    assert b.config == {"region": "us-east-1"}


def test_kinds_and_types() -> None:
    assert KINDS["azure"] == ("abfs", "abfss")
    assert KINDS["local"] == ("file",)
    assert TYPES == ("mem", "s3", "local", "minio", "stow", "redis")


# -- Flyte YAML, snake_case, wrapper ------------------------------------------------------------


def test_flyte_yaml_loads_unchanged(tmp_path: Path) -> None:
    config = Config.from_yaml(_write(tmp_path, FLYTE_YAML))
    assert config.type == "stow"
    assert config.container == "my-bucket"
    assert config.enable_multicontainer is True
    assert config.stow.kind == "s3"
    assert config.stow.config == {
        "endpoint": "http://127.0.0.1:9000",
        "auth_type": "accesskey",
        "access_key_id": "minio",
        "secret_key": SECRET,
        "disable_ssl": "true",
    }
    assert config.cache == CacheConfig(max_size_mbs=16, target_gc_percent=100)
    assert config.limits.max_download_mbs == 10
    http = config.default_http_client
    assert http.headers == {"X-Team": ["a", "b"], "X-One": ["single"]}
    assert (http.timeout, http.idle_conn_timeout) == (2.0, 90.0)
    assert (http.max_idle_conns, http.max_idle_conns_per_host, http.max_conns_per_host) == (10, 5, 3)
    assert config.signed_url.stow_config_override == {"endpoint": "https://public.example.com"}
    assert config.schemes["gs"] == SchemeConfig(kind="google", config={"project_id": "proj"})
    assert config.schemes["redis"].redis == RedisConfig(addr="127.0.0.1:6379", password=SECRET, db=2)
    assert config.scheme_config("GS") is config.schemes["gs"]
    assert config.scheme_config("abfs") is None
    assert config.primary_kind() == "s3"
    assert config.backend_config("google") == {"project_id": "proj"}
    assert config.backend_config("azure") == {}


def test_snake_case_loads_to_equal_config(tmp_path: Path) -> None:
    flyte = Config.from_yaml(_write(tmp_path, FLYTE_YAML, "flyte.yaml"))
    snake = Config.from_yaml(_write(tmp_path, SNAKE_YAML, "snake.yaml"))
    assert snake == flyte


def test_whole_flyte_file_with_storage_key(tmp_path: Path) -> None:
    whole = "logger:\n  level: 4\npropeller:\n  workers: 3\nstorage:\n" + textwrap.indent(FLYTE_YAML, "  ")
    section = Config.from_yaml(_write(tmp_path, FLYTE_YAML, "section.yaml"))
    assert Config.from_yaml(_write(tmp_path, whole, "whole.yaml")) == section


def test_from_dict_accepts_storage_wrapper() -> None:
    assert Config.from_dict({"storage": {"type": "mem"}}) == Config(type="mem")


def test_whole_file_without_storage_key_hints_at_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_yaml(_write(tmp_path, "logger:\n  level: 4\n"))
    assert info.value.field == "logger"
    assert "storage:" in str(info.value)


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="container"):
        Config.from_yaml(_write(tmp_path, ""))
    assert Config.from_yaml(_write(tmp_path, "storage:\n  type: mem\n", "mem.yaml")) == Config(type="mem")


def test_missing_and_malformed_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Config.from_yaml(tmp_path / "nope.yaml")
    path = _write(tmp_path, f"stow:\n  config: {{secret_key: {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        Config.from_yaml(path)
    assert "invalid YAML" in str(info.value)
    assert SECRET not in str(info.value)


def test_to_dict_round_trips_and_is_snake_case(tmp_path: Path) -> None:
    config = Config.from_yaml(_write(tmp_path, FLYTE_YAML))
    data = config.to_dict()
    assert data["enable_multicontainer"] is True
    assert data["limits"] == {"max_download_mbs": 10, "max_concurrent_operations": 1024, "copy_split_threshold_mbs": 64}
    assert data["retries"] == {"max_attempts": 4, "base_delay": 0.1, "max_delay": 5.0, "total_timeout": 30.0}
    assert data["default_http_client"]["idle_conn_timeout"] == 90.0
    assert data["stow"]["config"]["secret_key"] == SECRET
    assert Config.from_dict(data) == config


def test_to_dict_keeps_primary_kind_of_type_local() -> None:
    config = Config(type="local", container="c", local={"path": "/data"})
    again = Config.from_dict(config.to_dict())
    assert again == config
    assert again.primary_kind() == "local"


def test_nested_sections_accept_dicts_or_instances() -> None:
    from_dicts = Config(
        type="mem",
        cache={"max_size_mbs": 1},
        limits={"maxDownloadMBs": 3},
        default_http_client={"timeout": "1s"},
        schemes={"gs": {"kind": "google"}},
    )
    from_instances = Config(
        type="mem",
        cache=CacheConfig(max_size_mbs=1),
        limits=LimitsConfig(max_download_mbs=3),
        default_http_client=HttpClientConfig(timeout=1.0),
        schemes={"gs": SchemeConfig(kind="google")},
    )
    assert from_dicts == from_instances
    assert isinstance(from_dicts.cache, CacheConfig)
    assert isinstance(from_dicts.schemes["gs"], SchemeConfig)


def test_values_are_normalised() -> None:
    config = Config(
        type="mem",
        stow={"config": {"disable_ssl": False, "port": 9000, "ratio": 1.5, "gone": None}},
        default_http_client=HttpClientConfig(timeout="500ms", headers={"X": "y"}),  # type: ignore[arg-type,dict-item]
        redis={"addrs": "a:1, b:2"},
    )
    assert config.stow.config == {"disable_ssl": "false", "port": "9000", "ratio": "1.5"}
    assert config.default_http_client.timeout == 0.5
    assert config.default_http_client.headers == {"X": ["y"]}
    assert config.redis.addrs == ["a:1", "b:2"]


def test_with_overrides_validates() -> None:
    config = Config(type="mem")
    assert config.with_overrides(type="s3", container="b").primary_kind() == "s3"
    assert config.with_overrides(cache={"max_size_mbs": 4}).cache.max_size_mbs == 4
    with pytest.raises(ConfigError, match="container"):
        config.with_overrides(type="s3")
    with pytest.raises(ConfigError, match="container"):
        dataclasses.replace(config, type="minio")


# -- primary kind and backend config -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "kind", "scheme"),
    [
        ({"type": "mem"}, "mem", "mem"),
        ({"type": "redis", "redis": {"addr": "h:1"}}, "redis", "redis"),
        ({"type": "s3", "container": "c"}, "s3", "s3"),
        ({"type": "minio", "container": "c"}, "s3", "s3"),
        ({"type": "stow", "container": "c"}, "s3", "s3"),
        ({"type": "stow", "container": "c", "stow": {"kind": "google"}}, "google", "gs"),
        ({"type": "stow", "container": "c", "stow": {"kind": "azure"}}, "azure", "abfs"),
        (
            {"type": "stow", "container": "c", "stow": {"kind": "local", "config": {"path": "/d"}}},
            "local",
            "file",
        ),
        ({"type": "local", "container": "c", "local": {"path": "/d"}}, "local", "file"),
        ({"type": "local", "container": "c", "stow": {"kind": "s3"}}, "s3", "s3"),
    ],
)
def test_primary_kind_and_scheme(kwargs: dict[str, Any], kind: str, scheme: str) -> None:
    config = Config.from_dict(kwargs)
    assert config.primary_kind() == kind
    assert config.primary_scheme() == scheme


def test_type_local_with_local_sugar() -> None:
    config = Config(type="local", container="c", local={"path": "/data"})
    assert config.primary_kind() == "local"
    assert config.backend_config() == {"path": "/data"}
    config.backend_config()["path"] = "changed"
    assert config.backend_config() == {"path": "/data"}


def test_type_local_with_stow_config_path() -> None:
    config = Config.from_dict({"type": "local", "container": "c", "stow": {"kind": "local", "config": {"path": "/x"}}})
    assert config.backend_config() == {"path": "/x"}


def test_backend_config_of_mem_and_redis_is_empty() -> None:
    assert Config(type="mem").backend_config() == {}
    assert Config(type="redis", redis={"addr": "h:1"}).backend_config() == {}


def test_backend_config_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="oracle"):
        Config(type="mem").backend_config("oracle")


# -- environment ---------------------------------------------------------------------------------


def test_from_env_overrides_single_fields() -> None:
    env = {
        "FLYTESTORE_TYPE": "stow",
        "FLYTESTORE_CONTAINER": "bkt",
        "FLYTESTORE_ENABLE_MULTICONTAINER": "true",
        "FLYTESTORE_STOW__CONFIG__ENDPOINT": "http://127.0.0.1:9000",
        "FLYTESTORE_STOW__CONFIG__DISABLE_SSL": "true",
        "FLYTESTORE_CACHE__MAX_SIZE_MBS": "16",
        "FLYTESTORE_LIMITS__MAXDOWNLOADMBS": "0",
        "FLYTESTORE_DEFAULT_HTTP_CLIENT__TIMEOUT": "2s",
        "FLYTESTORE_DEFAULTHTTPCLIENT__MAXIDLECONNS": "7",
        "FLYTESTORE_REDIS__PASSWORD": "0123",
        "FLYTESTORE_SCHEMES__GS__CONFIG__PROJECT_ID": "007",
        "OTHER_VAR": "ignored",
    }
    config = Config.from_env(env)
    assert config.container == "bkt"
    assert config.enable_multicontainer is True
    # A single key merges over the default map.
    assert config.stow.config == {
        "region": "us-east-1",
        "endpoint": "http://127.0.0.1:9000",
        "disable_ssl": "true",
    }
    assert config.cache.max_size_mbs == 16
    assert config.limits.max_download_mbs == 0
    assert config.default_http_client.timeout == 2.0
    assert config.default_http_client.max_idle_conns == 7
    assert config.redis.password == "0123"  # strings are kept verbatim, not read as YAML numbers
    assert config.schemes["gs"].config == {"project_id": "007"}


def test_from_env_config_file_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "storage:\n" + textwrap.indent(FLYTE_YAML, "  "))
    for name in ("FLYTESTORE_TYPE", "FLYTESTORE_CONTAINER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYTESTORE_CONFIG", str(path))
    monkeypatch.setenv("FLYTESTORE_CONTAINER", "other")
    monkeypatch.setenv("FLYTESTORE_STOW__CONFIG__ENDPOINT", "http://elsewhere")
    monkeypatch.setenv("FLYTESTORE_LIMITS__MAX_DOWNLOAD_MBS", "5")
    monkeypatch.setenv("FLYTESTORE_SCHEMES__REDIS__REDIS__DB", "4")
    config = Config.from_env()
    assert config.container == "other"
    assert config.stow.config["endpoint"] == "http://elsewhere"
    assert config.stow.config["secret_key"] == SECRET
    assert config.limits.max_download_mbs == 5  # the file said maxDownloadMBs; no clash
    redis = config.schemes["redis"].redis
    assert redis is not None and (redis.db, redis.addr) == (4, "127.0.0.1:6379")
    assert config.enable_multicontainer is True


def test_from_env_custom_prefix_and_map_forms() -> None:
    env = {
        "APP_STORAGE_TYPE": "mem",
        "APP_STORAGE_SIGNED_URL__STOW_CONFIG_OVERRIDE": "endpoint=https://pub,region=eu",
        "APP_STORAGE_REDIS__ADDRS": "[a:1, b:2]",
    }
    config = Config.from_env(env, prefix="APP_STORAGE_")
    assert config.signed_url.stow_config_override == {"endpoint": "https://pub", "region": "eu"}
    assert config.redis.addrs == ["a:1", "b:2"]


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("FLYTESTORE_NOPE", "nope"),
        ("FLYTESTORE_CACHE__NOPE", "cache.nope"),
        ("FLYTESTORE_TYPE__X", "type"),
    ],
)
def test_from_env_unknown_names(name: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({name: "1", "FLYTESTORE_TYPE": "mem"})
    assert info.value.field == field


def test_from_env_bad_value_names_field() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({"FLYTESTORE_TYPE": "mem", "FLYTESTORE_CACHE__MAX_SIZE_MBS": "-3"})
    assert info.value.field == "cache.max_size_mbs"


# -- validation ----------------------------------------------------------------------------------


def test_invalid_type() -> None:
    err = _error(type="gcs")
    assert err.field == "type"
    assert "type is of an invalid value [gcs]" in str(err)
    assert str(err).startswith("type: ")


@pytest.mark.parametrize("type_", ["s3", "minio", "local", "stow"])
def test_container_required(type_: str) -> None:
    err = _error(type=type_)
    assert err.field == "container"
    assert "initContainer is required even with `enable-multicontainer`" in str(err)


def test_container_not_required_for_mem_and_redis() -> None:
    Config(type="mem")
    Config(type="redis", redis={"addr": "127.0.0.1:6379"})
    Config(type="redis", redis={"addrs": ["a:1", "b:2"]})


def test_redis_needs_an_address() -> None:
    err = _error(type="redis")
    assert err.field == "redis.addr"
    assert "storage type [redis] requires redis.addr to be set" in str(err)


@pytest.mark.parametrize("kind", ["oracle", "swift"])
def test_stow_kinds_flytestore_does_not_support(kind: str) -> None:
    err = _error(type="stow", container="c", stow={"kind": kind})
    assert err.field == "stow.kind"
    assert "not supported by flytestore" in str(err)


@pytest.mark.parametrize("kind", ["gcs", "mem", "redis", "S3", ""])
def test_invalid_stow_kind(kind: str) -> None:
    assert _error(type="stow", container="c", stow={"kind": kind}).field == "stow.kind"


def test_type_s3_with_another_stow_kind() -> None:
    assert _error(type="s3", container="c", stow={"kind": "google"}).field == "stow.kind"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"cache": {"max_size_mbs": -1}}, "cache.max_size_mbs"),
        ({"cache": {"target_gc_percent": -5}}, "cache.target_gc_percent"),
        ({"limits": {"maxDownloadMBs": -1}}, "limits.maxDownloadMBs"),
        ({"limits": {"max_download_mbs": "two"}}, "limits.maxDownloadMBs"),
        ({"limits": {"max_download_mbs": True}}, "limits.maxDownloadMBs"),
        ({"limits": {"max_download_mbs": 1.5}}, "limits.maxDownloadMBs"),
        ({"redis": {"db": -1}}, "redis.db"),
        ({"defaultHttpClient": {"maxIdleConns": -1}}, "defaultHttpClient.maxIdleConns"),
        ({"defaultHttpClient": {"max_conns_per_host": -1}}, "defaultHttpClient.maxConnsPerHost"),
        ({"defaultHttpClient": {"timeout": "2 seconds"}}, "defaultHttpClient.timeout"),
        ({"defaultHttpClient": {"timeout": -1}}, "defaultHttpClient.timeout"),
        ({"defaultHttpClient": {"idleConnTimeout": "-1s"}}, "defaultHttpClient.idleConnTimeout"),
        ({"defaultHttpClient": {"headers": {"X": {"a": 1}}}}, "defaultHttpClient.headers.X"),
        ({"enable-multicontainer": "maybe"}, "enable-multicontainer"),
        ({"schemes": {"s3": {"kind": "swift"}}}, "schemes.s3.kind"),
        ({"schemes": {"S3": {"kind": "nope"}}}, "schemes.s3.kind"),
        ({"schemes": {"s3": {"redis": {"db": -2}}}}, "schemes.s3.redis.db"),
        ({"schemes": {"s3": {}, "S3": {}}}, "schemes.s3"),
        ({"schemes": {"not a scheme": {}}}, "schemes.not a scheme"),
        ({"schemes": {"s3": {"bogus": 1}}}, "schemes.s3.bogus"),
        ({"stow": {"config": ["a"]}}, "stow.config"),
        ({"stow": "s3"}, "stow"),
        ({"local": {"path": "/x"}}, "local"),
        ({"bogus": 1}, "bogus"),
        ({"limits": {"maxDownloadMbs": 1}}, "limits.maxDownloadMbs"),
        ({"limits": {"maxDownloadMBs": 1, "max_download_mbs": 2}}, "limits.maxDownloadMBs"),
    ],
)
def test_invalid_values_name_the_field(data: dict[str, Any], field: str) -> None:
    err = _error(type="mem", **data)
    assert err.field == field
    assert str(err).startswith(f"{field}: ")


def test_unknown_key_lists_valid_keys() -> None:
    err = _error(type="mem", limits={"maxDownload": 1})
    assert "maxDownloadMBs" in str(err) and "max_download_mbs" in str(err)


def test_scheme_names_are_lower_cased() -> None:
    config = Config(type="mem", schemes={"ABFSS": {"kind": "azure"}})
    assert list(config.schemes) == ["abfss"]


def test_null_values_mean_default() -> None:
    config = Config.from_dict({"type": "mem", "cache": None, "limits": {"maxDownloadMBs": None}})
    assert config.limits.max_download_mbs == 2


# -- secrets -------------------------------------------------------------------------------------


def test_secrets_absent_from_repr(tmp_path: Path) -> None:
    config = Config.from_yaml(_write(tmp_path, FLYTE_YAML))
    config = config.with_overrides(
        signed_url={"stowConfigOverride": {"secret_key": SECRET, "endpoint": "https://pub"}},
        redis={"addr": "h:1", "password": SECRET},
        default_http_client={"headers": {"Authorization": f"Bearer {SECRET}"}},
    )
    for text in (repr(config), str(config), repr(config.stow), repr(config.schemes), repr(config.redis)):
        assert SECRET not in text
    assert "'***'" in repr(config)
    assert "https://pub" in repr(config)  # only secrets are masked


@pytest.mark.parametrize(
    "key", ["secret_key", "key", "json", "password", "sas_token", "connection_string", "token", "account_key"]
)
def test_each_secret_key_is_masked(key: str) -> None:
    config = Config(
        type="mem",
        stow={"config": {key: SECRET}},
        schemes={"abfs": {"config": {key.upper(): SECRET}}},
        signed_url={"stow_config_override": {key: SECRET}},
    )
    assert SECRET not in repr(config)


def test_secrets_absent_from_error_messages() -> None:
    cases: list[dict[str, Any]] = [
        {"stow": {"config": {"secret_key": [SECRET]}}},
        {"stow": {"config": {"json": {"private_key": SECRET}}}},
        {"redis": {"password": [SECRET]}},
        {"redis": {"password": {"x": SECRET}}},
        {"schemes": {"gs": {"config": {"json": [SECRET]}}}},
        {"signedUrl": {"stowConfigOverride": {"key": [SECRET]}}},
        {"defaultHttpClient": {"headers": {"Authorization": [{"t": SECRET}]}}},
    ]
    for data in cases:
        err = _error(type="mem", **data)
        assert SECRET not in str(err), data
        assert err.field


def test_secret_in_env_error_is_not_quoted() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({"FLYTESTORE_TYPE": "mem", "FLYTESTORE_REDIS__PASSWORD__X": SECRET})
    assert info.value.field == "redis.password"
    assert SECRET not in str(info.value)


# -- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        ("0", 0.0),
        (90, 90.0),
        (1.5, 1.5),
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("1h2m3s", 3723.0),
        ("250us", 0.00025),
        ("100ns", 1e-7),
        (".5s", 0.5),
        ("+3s", 3.0),
        (datetime.timedelta(minutes=2), 120.0),
    ],
)
def test_duration_parsing(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)
    assert Config(type="mem", default_http_client={"timeout": value}).default_http_client.timeout == pytest.approx(
        seconds
    )


@pytest.mark.parametrize("value", ["", "90", "1x", "s", "1m 30s", "-1s", -2, True, [1], "nan", float("inf")])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)
    with pytest.raises(ConfigError) as info:
        Config(type="mem", default_http_client={"idleConnTimeout": value})
    assert info.value.field == "defaultHttpClient.idleConnTimeout"


def test_retries_and_concurrency_budget_in_both_spellings() -> None:
    config = Config.from_dict(
        {
            "type": "mem",
            "limits": {"maxConcurrentOperations": 64},
            "retries": {"maxAttempts": 2, "baseDelay": "50ms", "maxDelay": "2s", "totalTimeout": "1m"},
        }
    )
    assert config.limits.max_concurrent_operations == 64
    assert (config.retries.max_attempts, config.retries.base_delay) == (2, 0.05)
    assert (config.retries.max_delay, config.retries.total_timeout) == (2.0, 60.0)
    snake = Config(type="mem", retries={"max_attempts": 1, "total_timeout": 0})
    assert (snake.retries.max_attempts, snake.retries.total_timeout) == (1, 0.0)


@pytest.mark.parametrize(
    ("section", "value", "field"),
    [
        ("retries", {"maxAttempts": 0}, "retries.maxAttempts"),
        ("retries", {"baseDelay": "soon"}, "retries.baseDelay"),
        ("retries", {"retries": 3}, "retries.retries"),
        ("limits", {"maxConcurrentOperations": -1}, "limits.maxConcurrentOperations"),
    ],
)
def test_bad_retries_and_budget_name_the_field(section: str, value: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"type": "mem", section: value})
    assert info.value.field == field


def test_create_container_spellings_defaults_and_errors() -> None:
    assert Config(type="mem").create_container is True  # Flyte's behaviour
    for data in ({"createContainer": False}, {"create_container": "false"}):
        config = Config.from_dict({"type": "s3", "container": "b", **data})
        assert config.create_container is False
        assert Config.from_dict(config.to_dict()).create_container is False  # round-trips
    assert Config.from_env({"FLYTESTORE_TYPE": "mem", "FLYTESTORE_CREATECONTAINER": "false"}).create_container is False
    with pytest.raises(ConfigError, match="createContainer"):
        Config.from_dict({"type": "mem", "createContainer": "sometimes"})


@pytest.mark.parametrize("kind", ["s3", "google", "azure", "local"])
def test_every_backend_with_containers_takes_create_container_from_the_config(kind: str) -> None:
    from flytestore.registry import create_backend

    settings = {
        "s3": {"region": "us-east-1"},
        "google": {"endpoint": "http://127.0.0.1:1"},
        "azure": {"endpoint": "http://127.0.0.1:1", "account": "a", "key": "a2V5"},
        "local": {"path": "/tmp"},
    }[kind]
    for flag in (True, False):
        config = Config(type="mem", create_container=flag)
        store: Any = create_backend(kind, settings, config=config, scope=None, container="b")
        while hasattr(store, "inner"):
            store = store.inner
        assert store.create_container is flag


def test_an_unknown_key_inside_local_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"local\.pth"):
        Config(type="local", container="c", local={"path": "/tmp", "pth": "/x"})
    assert Config(type="local", container="c", local={"path": "/tmp"}).local == {"path": "/tmp"}
