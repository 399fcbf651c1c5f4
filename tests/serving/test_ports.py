"""Ports handed out for listening stay below the kernel's ephemeral range, where no outgoing
connection can take them between the choice and the bind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from serving import ports


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    start = ports.ephemeral_start()
    for _ in range(50):
        port = ports.free_port()
        assert ports.LISTEN_RANGE_START <= port < start
        assert ports.port_is_free(ports.LOOPBACK, port)


def test_a_run_is_consecutive_free_and_below_the_ephemeral_range() -> None:
    first = ports.free_port_run(4)
    assert first >= ports.LISTEN_RANGE_START and first + 3 < ports.ephemeral_start()
    assert all(ports.port_is_free(ports.LOOPBACK, first + i) for i in range(4))


def test_a_listened_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind((ports.LOOPBACK, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy - 1024, busy - 1024, busy + 1 - 1024])
        monkeypatch.setattr(ports.secrets, "randbelow", lambda _: next(picks))
        monkeypatch.setattr(ports, "listen_ports", lambda: range(1024, 65536))
        assert ports.free_port() == busy + 1


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("40000\t60999\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", range_file)
    ports.ephemeral_start.cache_clear()
    try:
        assert ports.listen_ports() == range(ports.LISTEN_RANGE_START, 40000)
        range_file.write_text("20500\t60999\n")
        ports.ephemeral_start.cache_clear()
        with pytest.raises(OSError, match=r"starts at 20500 .*ip_local_port_range"):
            ports.listen_ports()
    finally:
        ports.ephemeral_start.cache_clear()
