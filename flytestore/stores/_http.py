"""HTTP client settings shared by the HTTP backends, from Flyte's ``defaultHttpClient`` section.

Go's transport knobs map onto aiohttp as: ``maxIdleConns`` -> the connector's total connection
limit (the pool size), ``maxConnsPerHost`` -> ``limit_per_host`` (0 = unlimited),
``idleConnTimeout`` -> ``keepalive_timeout``, ``timeout`` -> the total request timeout
(0 = none), ``headers`` -> default headers sent on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Config

if TYPE_CHECKING:
    import aiohttp

__all__ = ["HttpSettings", "aiohttp_session", "http_settings"]


@dataclass(frozen=True)
class HttpSettings:
    pool_size: int
    per_host: int
    keepalive: float
    timeout: float | None
    headers: dict[str, str]


def http_settings(config: Config) -> HttpSettings:
    http = config.default_http_client
    return HttpSettings(
        pool_size=http.max_idle_conns or 100,
        per_host=http.max_conns_per_host,
        keepalive=http.idle_conn_timeout or 90.0,
        timeout=http.timeout or None,
        # aiohttp takes one value per header: multi-valued Go headers are joined as HTTP allows.
        headers={name: ", ".join(values) for name, values in http.headers.items()},
    )


def aiohttp_session(config: Config) -> aiohttp.ClientSession:
    """A ClientSession honouring the config's pool, keep-alive, timeout and default headers.

    Must be called with an event loop running (from a store's ``open()``).
    """
    import aiohttp

    s = http_settings(config)
    connector = aiohttp.TCPConnector(limit=s.pool_size, limit_per_host=s.per_host, keepalive_timeout=s.keepalive)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=s.timeout), headers=s.headers or None
    )
