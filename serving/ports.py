"""Which TCP ports can be listened on: the one port check of the service, its tools and tests.

A port handed out here is listened on later, sometimes much later (a proxy replica starts after
the one before it has loaded its model). A port from the kernel's ephemeral range can be taken in
that gap by any outgoing connection's local end, so ports are chosen below that range."""

from __future__ import annotations

import secrets
import socket
from functools import cache
from pathlib import Path

LOOPBACK = "127.0.0.1"
LISTEN_RANGE_START = 20000  # above the well-known and most registered service ports
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
IANA_EPHEMERAL_START = 49152  # the dynamic range of RFC 6335, where the kernel has no file


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind `host:port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@cache
def ephemeral_start() -> int:
    """The first local port the kernel gives outgoing connections."""
    if not EPHEMERAL_RANGE_FILE.exists():
        return IANA_EPHEMERAL_START
    return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])


def listen_ports() -> range:
    """The ports handed out: from LISTEN_RANGE_START up to the ephemeral range."""
    end = ephemeral_start()
    if end - LISTEN_RANGE_START < 1000:
        raise OSError(f"the ephemeral port range starts at {end} ({EPHEMERAL_RANGE_FILE}): too "
                      f"few ports below it from {LISTEN_RANGE_START} to hand out for listening")
    return range(LISTEN_RANGE_START, end)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that nothing listens on right now, outside the ephemeral range."""
    return free_port_run(1, host)


def free_port_run(count: int, host: str = LOOPBACK, attempts: int = 200) -> int:
    """The first of `count` consecutive ports on `host` that nothing listens on right now (for
    things that take ports from a base up: model servers, proxy replicas), outside the ephemeral
    range. Random starts make it unlikely that two callers pick the same port."""
    ports = listen_ports()
    for _ in range(attempts):
        first = ports.start + secrets.randbelow(len(ports) - count + 1)
        if all(port_is_free(host, first + i) for i in range(count)):
            return first
    raise OSError(f"no run of {count} free ports found on {host} in {ports.start}..{ports.stop - 1} "
                  f"after {attempts} tries")
