"""The throughput section of REPORT.md: the whole proxy against the in-process design, the anchor
and the proxy's own variants (bench/throughput.py), the targets of issue 14, and what one
rate-limit check costs."""

from __future__ import annotations

from typing import Any

from bench.report import _missing, _when, format_cell, table

NAMES = {
    "anchor": "anchor: bare `mlflow models serve`",
    "proxy": "proxy, batching off (limit + audit)",
    "proxy_no_limit": "proxy, batching off, no rate limit",
    "proxy_batching": "proxy, batching on (limit + audit)",
    "inprocess": "in-process design (one FastAPI process)",
}


def throughput_section(result: dict[str, Any] | None, cost: dict[str, Any] | None = None) -> str:
    """`cost`: bench.ratelimit_cost's own result, newer than the check measured in `result`."""
    title = "## Throughput: the whole proxy against the in-process design"
    if not result:
        return f"{title}\n\n{_missing('python -m bench.throughput')}"
    rows = []
    levels = result["plan"]["concurrency"]
    for level in map(str, levels):
        for name, measured in result["results"].items():
            if level in measured:
                m = measured[level]
                rows.append([level, NAMES.get(name, name), m["requests_per_s"], m["p50_ms"], m["p95_ms"],
                             m["p99_ms"], m["errors"], m["server_cpu_ms_per_request"],
                             m.get("mean_batch_rows")])
    lines = [
        title, "", _when(result), "",
        "Single-row requests (one distinct test row each, every body different), wrk with one thread, "
        "the five targets measured in turn at each concurrency. Every proxy is a `make stack` of its "
        "own with its own Redis and model server, the audit trail and the prediction store on; a "
        "per-key rate limit is set (high enough never to refuse) except where the row says "
        "otherwise; production is the batching-on proxy, as conf/serving.yaml ships it. CPU is "
        "the server processes' CPU time (psutil) per request: the proxy plus its model server, or "
        "the one in-process server. Mean batch is the rows per upstream call from the proxy's "
        "batch-size histogram.", "",
        table(["concurrency", "target", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
               "server CPU ms/req", "mean batch"], rows),
    ]
    for name, why in (result.get("not_measured") or {}).items():
        lines += ["", f"_{NAMES.get(name, name)}: not measured: {why}._"]
    errors = {name: sum(m["errors"] for m in levels.values()) for name, levels in result["results"].items()}
    if errors.get("inprocess") and not any(v for k, v in errors.items() if k != "inprocess"):
        lines += ["", f"The in-process design's {errors['inprocess']} errors are 422s: its pydantic model "
                      "refused test rows with an area of 0, which the served model's rules accept (fixed "
                      "in bench/inprocess_app.py after this run)."]
    lines += ["", _targets_text(result), "", _limit_text(result, cost), "", _profile_text(result)]
    return "\n".join(lines)


def _profile_text(result: dict[str, Any]) -> str:
    profile = result.get("profile")
    if not profile:
        return ""
    measured = profile["profiles"][profile["variant"]]
    project = [(k, v) for k, v in measured.get("total_by_function", [])
               if any(m in k for m in ("serving/", "valuation/"))][:8]
    packages = measured.get("self_by_package", [])[:6]
    return "\n".join([
        f"Where the production proxy's CPU goes (py-spy, {profile['duration_s']:g} s at concurrency "
        f"{profile['concurrency']}, {measured.get('samples')} samples; all tables in "
        "[`throughput_profile.md`](throughput_profile.md)): innermost frames by package "
        + ", ".join(f"{k} {v:.0%}" for k, v in packages) + "; project functions with callees "
        + ", ".join(f"`{k.split(' (')[0]}` {v:.0%}" for k, v in project) + "."])


def _targets_text(result: dict[str, Any]) -> str:
    targets = result["targets"]
    chosen = NAMES.get(targets["proxy_measured"], targets["proxy_measured"])
    rows = []
    for level in ("32", "8"):
        if f"over_inprocess_c{level}" in targets:
            rows.append([f"{chosen} ÷ in-process, req/s at concurrency {level}",
                         f"≥ {targets[f'over_inprocess_c{level}_target']}",
                         targets[f"over_inprocess_c{level}"], targets[f"over_inprocess_c{level}_met"]])
    if "p50_c1_extra_ms" in targets:
        rows.append(["p50 at concurrency 1, batching on − off (ms)", "≤ +0.2",
                     targets["p50_c1_extra_ms"], targets["p50_c1_met"]])
    else:
        rows.append(["p50 at concurrency 1, batching on − off (ms)", "≤ +0.2", None,
                     "not measured (no batching in this build)"])
    errors = targets["errors_total"]
    rows.append(["errors, all targets and levels", "0", errors, errors == 0])
    return "\n".join(["Targets of issue 14:", "", table(["target", "wanted", "measured", "met"], rows)])


def _limit_text(result: dict[str, Any], cost: dict[str, Any] | None) -> str:
    comparison = result.get("comparison") or {}
    shares = [f"{format_cell(100 * (row['limit_cpu_share'] or 0))} % of CPU and "
              f"{format_cell(100 * row['limit_rps_cost'])} % of req/s at concurrency {level}"
              for level, row in comparison.items()]
    lines = ["The rate limit's share (`proxy` against `proxy_no_limit`; differences of a few per cent are "
             "within this machine's noise): " + "; ".join(shares) + "."]
    measured = ((result, result.get("ratelimit_check"), "the stack's own Redis, after the load"),
                (cost, (cost or {}).get("ways"), "`python -m bench.ratelimit_cost`"))
    for source, check, where in measured:
        if not check:
            continue
        rows = [[way, level, figures["cpu_us_per_check"], figures["wall_us_per_check"]]
                for way, by_level in check.items() for level, figures in by_level.items()]
        when = f"measured {source.get('started_at')}, load average {source.get('load_avg_1m_at_start')}"
        lines += ["", f"One rate-limit check ({where}; {when}): as it was "
                      "(MULTI/INCR/EXPIRE/EXEC on the sync client through the thread pool), as one EVALSHA "
                      "of a Lua script on an asyncio client on the event loop, and with leases (a "
                      "replica reserves up to 1 % of the limit, at most 32 units, per round trip); "
                      "medians of alternating rounds:", "",
                  table(["way", "checks in flight", "CPU µs per check", "wall µs per check"], rows)]
    return "\n".join(lines)
