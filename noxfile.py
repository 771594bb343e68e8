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
    """The benchmark suite, flytestore beside its peers on local servers (results in
    ``benchmarks/results/``), then the core and local-disk benchmarks (about 30 s).

    Arguments go to ``benchmarks/suite.py``: ``nox -s bench -- --quick`` for a small run,
    ``-- --backends s3,local --scenarios 1,4`` for a subset.
    """
    session.install("-e", ".[all,test,bench]")
    session.run("python", "benchmarks/suite.py", *session.posargs)
    session.run("python", "benchmarks/bench_core.py")
    if "--quick" in session.posargs:
        session.run("python", "benchmarks/bench_local.py", "--size-mib", "64", "--big-gib", "0.25", "--reps", "3")
    else:
        session.run("python", "benchmarks/bench_local.py")
