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

LOG_PATH = sys.argv[1]


def _refuse(what: str, *args: Any) -> Any:
    with open(LOG_PATH, "a", encoding="utf-8") as log:
        log.write(f"{what} {args!r} thread={threading.current_thread().name}\n")
        log.write("".join(traceback.format_stack(limit=15)) + "\n")
    raise OSError(f"network refused by tests/netguard.py: {what}")


for _name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
    setattr(socket, _name, lambda *a, _n=_name, **k: _refuse(_n, *a))
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _guarded(real: Any) -> Any:
    def call(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            return _refuse("connect", address)
        return real(self, address)

    return call


socket.socket.connect = _guarded(_connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded(_connect_ex)  # type: ignore[method-assign]

if __name__ == "__main__":
    from convlens.cli import main

    sys.argv = ["convlens", *sys.argv[2:]]
    main()
