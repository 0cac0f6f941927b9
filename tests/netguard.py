"""Run the ``convlens`` command with the network refused at the Python socket layer.

``python tests/netguard.py LOG ARGS...``: every ``getaddrinfo``/``gethostbyname``/``gethostbyaddr``/
``getnameinfo`` call and every AF_INET/AF_INET6 ``connect`` is written to ``LOG`` (what, arguments,
thread, stack) and fails with ``OSError``, as it would without a network. Used by
``tests/test_offline.py``; worker processes forked by the command inherit the guard."""

from __future__ import annotations

import socket
import sys
import threading
import traceback
from typing import Any


def install(log_path: str) -> None:
    """Refuse (and record in ``log_path``) every name lookup and AF_INET/AF_INET6 connect from now
    on, in this process and the ones it forks. Only when run as a script: pytest imports this file
    too (``--doctest-modules``), and importing it must not guard the test process itself."""

    def refuse(what: str, *args: Any) -> Any:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"{what} {args!r} thread={threading.current_thread().name}\n")
            log.write("".join(traceback.format_stack(limit=15)) + "\n")
        raise OSError(f"network refused by tests/netguard.py: {what}")

    for name in (
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname_ex",
        "gethostbyaddr",
        "getnameinfo",
    ):
        setattr(socket, name, lambda *a, _n=name, **k: refuse(_n, *a))
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real: Any) -> Any:
        def call(self: socket.socket, address: Any) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                return refuse("connect", address)
            return real(self, address)

        return call

    socket.socket.connect = guarded(real_connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded(real_connect_ex)  # type: ignore[method-assign]


if __name__ == "__main__":
    from convlens.cli import main

    install(sys.argv[1])
    sys.argv = ["convlens", *sys.argv[2:]]
    main()
