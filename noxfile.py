"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``demo``, ``bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite; fixtures start any server they need on 127.0.0.1."""
    session.install("-e", ".[all,test]")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[all]", "mypy==2.4.1", "types-aiofiles", "types-PyYAML", "types-protobuf")
    session.run("mypy", "--strict", "flytestore")


@nox.session
def demo(session: nox.Session) -> None:
    """The quickstart on local disk: no server needed."""
    session.install("-e", ".")
    session.run("python", "examples/quickstart.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Core benchmarks (cache, layer overhead, local streaming)."""
    session.install("-e", ".[all,test]")
    session.run("python", "benchmarks/bench_core.py", *session.posargs)
    session.run("python", "benchmarks/bench_local.py", *session.posargs)
