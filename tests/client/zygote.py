"""Forks ``kronika serve`` processes from one that has already imported Kronika.

A fresh ``kronika serve`` spends about 1.5 s of CPU importing the server before it opens
the store; the conformance suite needs a fresh server for each of its ~150 tests. This
process imports once, then for each request (a JSON line on stdin: ``argv``, ``env``,
``log``) forks a child that runs the real CLI entry point, ``kronika.cli.app.main``, with
that command line, exactly as the ``kronika`` script does. It answers with the child's
pid. Children are reaped automatically (SIGCHLD ignored), so a test knows a server has
exited when its pid no longer exists.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import uvicorn  # noqa: F401

import kronika.cli.app
import kronika.server.app  # imported here so the forked children need not
import kronika.store.postgres
import kronika.store.sqlite


def _child(request: dict[str, object]) -> None:
    os.setsid()
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[arg-type]
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.argv = list(request["argv"])  # type: ignore[call-overload]
    code = 0
    try:
        kronika.cli.app.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # report and exit as the script would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
