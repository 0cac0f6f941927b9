"""Atomic writes (``convlens._atomic``): a file is replaced whole or not at all, and only a regular
file is ever replaced."""

from __future__ import annotations

import os

import pytest

from convlens._atomic import write_text
from convlens.errors import ConvlensError


def test_atomic_write_refuses_symlinks_fifos_and_devices(tmp_path):
    """Regression: outside review of issues 11-12 (atomic writes refuse links, FIFOs, devices)."""
    target = tmp_path / "target.json"
    target.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(ConvlensError, match="is a symbolic link"):
        write_text(link, "x")
    assert link.is_symlink() and target.read_text() == "keep"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConvlensError, match="not a regular file"):
        write_text(fifo, "x")
    assert not fifo.is_file()
    with pytest.raises(ConvlensError, match="not a regular file"):
        write_text("/dev/null", "x")
    assert not os.path.isfile("/dev/null")
    assert not list(tmp_path.glob(".*.tmp"))
    write_text(tmp_path / "plain.json", "ok")  # regular files are still replaced atomically
    write_text(tmp_path / "plain.json", "ok2")
    assert (tmp_path / "plain.json").read_text() == "ok2"
