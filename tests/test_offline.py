"""No network at run time, proven two ways (reliability round 3): ``convlens demo`` (small) and
``convlens analyze`` of an ONNX model with data run

- under a Python socket guard (``tests/netguard.py``) that refuses and records every name lookup
  and every AF_INET/AF_INET6 connect, and
- inside a network namespace with no interfaces (``unshare -n``, where the kernel lets this user
  create one: root in CI), where nothing below Python can reach a network either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
ONNX = HERE / "data" / "real" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
COMMANDS = {
    "demo": ["demo", "-q", "--seeds", "1", "--epochs", "3", "--null-size", "100", "--out", "d"],
    "analyze-onnx": [
        "analyze",
        str(ONNX),
        "--data",
        "faces",
        "--null-size",
        "100",
        "--out",
        "a.json",
    ],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_name_lookup_or_connect_under_the_socket_guard(name: str, tmp_path: Path) -> None:
    log = tmp_path / "network.log"
    args = [sys.executable, str(HERE / "netguard.py"), str(log), *COMMANDS[name]]
    proc = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not log.exists(), log.read_text()[:4000]


def _unshare_works() -> bool:
    tool = shutil.which("unshare")
    if tool is None:
        return False
    return subprocess.run([tool, "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="unshare -n is not permitted here")
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_runs_in_a_network_namespace_without_interfaces(name: str, tmp_path: Path) -> None:
    probe = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", "import socket; print(socket.if_nameindex())"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0 and "eth" not in probe.stdout  # only lo, and it is down
    args = ["unshare", "-n", sys.executable, "-m", "convlens.cli", *COMMANDS[name]]
    proc = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_importing_the_guard_leaves_the_importer_unguarded() -> None:
    """Regression: pytest imports tests/netguard.py (``--doctest-modules``); the guard used to be
    installed at import, refusing name lookups in the test process for the rest of the session
    and logging them to a file named after pytest's first argument (``-q``)."""
    import socket

    before = (socket.getaddrinfo, socket.gethostbyaddr, socket.socket.connect)
    import tests.netguard  # noqa: F401

    assert (socket.getaddrinfo, socket.gethostbyaddr, socket.socket.connect) == before
