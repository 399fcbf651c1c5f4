"""Which TCP ports can be listened on: the one port check of the service, its tools and tests."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind `host:port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_run(count: int, host: str = LOOPBACK, attempts: int = 50) -> int:
    """The first of `count` consecutive ports on `host` that nothing listens on right now (for
    things that take ports from a base up: model servers, proxy replicas)."""
    for _ in range(attempts):
        first = free_port(host)
        if first + count <= 65536 and all(port_is_free(host, first + i) for i in range(1, count)):
            return first
    raise OSError(f"no run of {count} free ports found on {host} in {attempts} attempts")
