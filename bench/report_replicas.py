"""The replicas section of REPORT.md: throughput through the balancer with one and with two proxy
replicas (bench/replicas.py), and why a second replica on the same few cores adds what it adds."""

from __future__ import annotations

from typing import Any

from bench.report import _missing, _when, table


def replicas_section(result: dict[str, Any] | None) -> str:
    title = "## Proxy replicas behind nginx (`make stack PROXIES=2`)"
    if not result:
        return f"{title}\n\n{_missing('python -m bench.replicas')}"
    cores = (result.get("machine") or {}).get("cores")
    rows = []
    for name, levels in result["results"].items():
        for connections, measured in levels.items():
            rows.append([name, connections, measured["requests_per_s"], measured["p50_ms"],
                         measured["p99_ms"], measured["errors"],
                         measured["server_cpu_ms_per_request"], measured["server_cpu_cores"]])
    gains = ", ".join(f"{ratio:.2f}× at concurrency {c}" if ratio is not None else f"– at {c}"
                      for c, ratio in result["two_over_one"].items())
    return "\n".join([
        title, "", _when(result), "",
        "The same champion, single-row requests replayed by wrk: the stack's proxy directly, the "
        "stack's nginx configuration in front of that one proxy, and two replicas (each with its own "
        "model server) behind it. Stack CPU is the CPU time of every process of the stack (proxies, "
        "model servers, nginx, and the idle tracking server, Vault and worker) per request, and in "
        "cores while loaded.", "",
        table(["configuration", "concurrency", "req/s", "p50 ms", "p99 ms", "errors",
               "stack CPU ms/req", "stack CPU cores"], rows),
        "",
        f"Two replicas over one, both through nginx: {gains}. This machine has {cores} cores, "
        "shared by wrk, nginx, the proxies and the model servers (and anything else running). One "
        "replica already keeps about as many cores busy as the machine has (the stack CPU cores "
        "column), so a second replica adds processes that compete for the same cores rather than "
        "new capacity: its gain is bounded by the CPU the first replica left idle, minus what "
        "nginx's extra hop costs. Replicas multiply throughput when each gets cores of its own "
        "(pods on different nodes); here they buy availability (a replica can die or restart "
        "while the other serves), not speed.",
    ])
