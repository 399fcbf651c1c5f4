"""The replicas section of REPORT.md: throughput through the balancer with one and with two proxy
replicas (bench/replicas.py), and why a second replica on the same few cores adds what it adds."""

from __future__ import annotations

from typing import Any

from bench.report import _missing, _when, format_cell, table


def replicas_section(result: dict[str, Any] | None) -> str:
    title = "## Proxy replicas behind nginx (`make stack PROXIES=2`)"
    if not result:
        return f"{title}\n\n{_missing('python -m bench.replicas')}"
    cores = (result.get("machine") or {}).get("cores")
    rows = []
    for name, levels in result["results"].items():
        for connections, measured in levels.items():
            cpu_ms = measured["server_cpu_ms_per_request"]
            ceiling = cores * 1000 / cpu_ms if cores and cpu_ms else None
            rows.append([name, connections, measured["requests_per_s"], measured["p50_ms"],
                         measured["p99_ms"], measured["errors"], cpu_ms,
                         measured["server_cpu_cores"], ceiling])
    gains = ", ".join(f"{format_cell(ratio)}× at concurrency {c}"
                      for c, ratio in result["two_over_one"].items())
    return "\n".join([
        title, "", _when(result), "",
        "The same champion, single-row requests replayed by wrk: the stack's proxy directly, the "
        "stack's nginx configuration in front of that one proxy, and two replicas (each with its own "
        "model server) behind it. Stack CPU is the CPU time of every process of the stack (proxies, "
        "model servers, nginx, and the idle tracking server, Vault and worker): per request, and in "
        f"cores while loaded. The ceiling is what all {cores} cores would serve at that CPU cost per "
        "request.", "",
        table(["configuration", "concurrency", "req/s", "p50 ms", "p99 ms", "errors",
               "stack CPU ms/req", "stack CPU cores", f"ceiling on {cores} cores, req/s"], rows),
        "",
        f"Two replicas over one, both through nginx: {gains}. Throughput is the cores the stack "
        "gets divided by its CPU time per request, and a second replica on the same machine changes "
        "both in opposite directions: it adds no core, only processes that can use more of the ones "
        "there are (one proxy is one Python process, one event loop), while each request costs a "
        "little more (the nginx hop; two model servers and supervisors instead of one). So on "
        f"{cores} cores the gain is bounded by the CPU one replica leaves idle, and the ceiling "
        "column shows it cannot double. Where other work loads the machine (see the load average "
        "above), more processes also win a larger share of the contended cores from the scheduler, "
        "which is part of what two replicas gain in such a run, not capacity. Replicas multiply "
        "throughput when each gets cores of its own (pods on different nodes); on one small machine "
        "they buy availability: a replica can die or restart while the other serves.",
    ])
