"""The hardening sections of REPORT.md: the soak (bench/soak.py) and fault injection (bench/faults.py).

bench/report.py places them beside the serving results and adds their rows to the targets table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import _missing, _save, _when, format_cell, table

SOAK_PLOT = "soak_p99_and_memory.png"
RSS_NAMES = {"proxy": "proxy", "model_server": "model server (tree)"}


def target_rows(soak: dict[str, Any] | None, faults: dict[str, Any] | None) -> list[list[Any]]:
    """Rows for the report's targets table (target, measured, met)."""
    rows: list[list[Any]] = []
    if soak:
        minutes = f"{soak['plan']['duration_s'] / 60:g} min"
        verdict, p99 = soak["verdict"], soak["p99"]
        rows += [
            [f"soak ({minutes} at {soak['target_rate_per_s']:.0f} req/s): zero errors",
             f"{soak['errors_total']} errors", verdict["zero_errors"]],
            ["soak: p99 steady (last window ≤ 2× the first)",
             f"{format_cell(p99.get('last_over_first'))}× (max/min {format_cell(p99.get('max_over_min'))}×)",
             verdict["p99_steady"]],
            ["soak: memory flat", _rss_text(soak["rss"]), verdict["memory_flat"]],
        ]
    if faults:
        summary = faults["summary"]
        rows.append(["fault injection: every fault test passes",
                     f"{summary['passed']}/{summary['selected']} passed", faults["all_passed"]])
    return rows


def _rss_text(rss: dict[str, Any]) -> str:
    return ", ".join(f"{RSS_NAMES[name]} {r['start_mb']:.0f}→{r['end_mb']:.0f} MB"
                     for name, r in rss.items() if name in RSS_NAMES) or "not sampled"


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in errors.items()) or "none"


def soak_section(soak: dict[str, Any] | None, plots: dict[str, str]) -> str:
    title = "## Soak"
    if not soak:
        return f"{title}\n\n{_missing('python -m bench.soak')}"
    plan, p99, maximum = soak["plan"], soak["p99"], soak.get("max_throughput")
    if soak.get("rate_from_flag") or not maximum:
        origin = "the rate given with `--rate`"
    else:
        where = ("the serving part measured" if maximum["source"] == "serving.json"
                 else maximum["source"])
        origin = (f"{soak['load_fraction']:.0%} of {maximum['requests_per_s']:.0f} req/s, the highest "
                  f"single-row throughput through the proxy {where} "
                  f"(at concurrency {maximum['concurrency']})")
    rows = [
        ["target rate (req/s)", soak["target_rate_per_s"]],
        ["achieved: 200 answers per second", soak["achieved_rate_per_s"]],
        ["requests issued / answered 200", f"{soak['issued']:,} / {soak['ok']:,}"],
        ["errors by status", _errors_text(soak["errors_by_status"])],
        ["p99 first / last window (ms)", f"{format_cell(p99.get('p99_first_ms'))} / "
                                         f"{format_cell(p99.get('p99_last_ms'))}"],
        ["p99 lowest / highest window (ms)", f"{format_cell(p99.get('p99_min_ms'))} / "
                                             f"{format_cell(p99.get('p99_max_ms'))}"],
        ["p99 last / first; highest / lowest", f"{format_cell(p99.get('last_over_first'))}× ; "
                                               f"{format_cell(p99.get('max_over_min'))}×"],
    ]
    for name, r in soak["rss"].items():
        rows.append([f"RSS {RSS_NAMES.get(name, name)}: start / end / max (MB)",
                     f"{r['start_mb']:.0f} / {r['end_mb']:.0f} / {r['max_mb']:.0f} "
                     f"(growth {r['growth_mb']:+.0f} MB, {'flat' if r['flat'] else '**not flat**'})"])
    rows.append(["load generator's own CPU (cores)", soak.get("client_cpu_cores")])
    verdict = soak["verdict"]
    windows = [[f"{w['start_s']:.0f}–{w['end_s']:.0f}", w["ok_per_s"], w["p50_ms"], w["p99_ms"], w["max_ms"],
                _errors_text(w["errors"])] for w in soak["windows"]]
    text = [
        f"## Soak: {plan['duration_s'] / 60:g} minutes at {soak['target_rate_per_s']:.0f} req/s", "",
        _when(soak), "",
        f"Open-loop load through the proxy of the stack as `make stack` runs it: {origin}; "
        f"{soak['connections']} keep-alive connections, one distinct test row per request, "
        f"{plan['warmup_s']:g} s of warm-up not counted. Latency runs from the moment a request is due "
        f"(time spent waiting for a free connection counts) and covers 200 answers; p50/p99 per "
        f"{plan['window_s']:g}-second window; RSS sampled every {plan['rss_interval_s']:g} s "
        "(flat = growth from the first to the last quarter of the samples within max(10 MB, 5 %)).", "",
        table(["figure", "value"], rows), "",
        table(["zero errors", "p99 steady (last ≤ 2× first)", "memory flat", "rate held (≥ 95 % of target)"],
              [[verdict[k] for k in ("zero_errors", "p99_steady", "memory_flat", "rate_held")]]),
        "", "<details><summary>Every window</summary>", "",
        table(["seconds", "200/s", "p50 ms", "p99 ms", "max ms", "errors"], windows), "", "</details>",
    ]
    if "soak" in plots:
        text += ["", f"![soak: p99 per window and memory]({plots['soak']})"]
    return "\n".join(text)


def faults_section(faults: dict[str, Any] | None) -> str:
    title = "## Fault injection"
    if not faults:
        return f"{title}\n\n{_missing('python -m bench.faults')}"
    summary = faults["summary"]
    rows = []
    for test in faults["tests"]:
        outcome = test["outcome"] if test["outcome"] == "passed" else f"**{test['outcome']}**"
        if test.get("message"):
            outcome += f": {test['message']}"
        figures = ", ".join(f"{k} = {format_cell(v)}" for k, v in test.get("properties", {}).items())
        rows.append([test["description"], f"`{test['name']}`", outcome, test.get("duration_s"), figures])
    text = [
        title, "", _when(faults), "",
        "Each test breaks a real dependency of the service (a SIGKILLed model server or worker, a "
        "killed Redis, a stopped Vault, broken model artifacts) and asserts what the service does; "
        f"`python -m bench.faults` runs them in one pytest process ({summary['selected']} tests, "
        f"{format_cell(faults.get('wall_s'))} s, pytest exit code {faults.get('pytest_exit_code')}): "
        f"**{summary['passed']} passed**, {summary['failed']} failed, {summary['error']} errors, "
        f"{summary['skipped']} skipped. Figures are what the tests record (`record_property`).", "",
        table(["fault proved", "test", "outcome", "s", "figures"], rows),
    ]
    if faults.get("missing_selections"):
        text += ["", "**No test matched**: " + "; ".join(f"`{m}`" for m in faults["missing_selections"])]
    return "\n".join(text)


def draw_soak_plot(directory: Path, soak: dict[str, Any] | None) -> dict[str, str]:
    """p50/p99 per window beside RSS over time; {"soak": file name} when drawn."""
    if not soak or not soak.get("windows"):
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    middles = [(w["start_s"] + w["end_s"]) / 2 for w in soak["windows"]]
    for key, label in (("p99_ms", "p99"), ("p50_ms", "p50")):
        points = [(m, w[key]) for m, w in zip(middles, soak["windows"], strict=True) if w[key] is not None]
        if points:
            left.plot(*zip(*points, strict=True), marker="o", label=label)
    left.set(xlabel="seconds of soak (window middle)", ylabel="latency (ms)",
             title=f"Latency per window at {soak['target_rate_per_s']:.0f} req/s", ylim=(0, None))
    for key, label in (("proxy_mb", "proxy"), ("model_server_mb", "model server (tree)")):
        points = [(s["t_s"], s[key]) for s in soak.get("rss_samples", []) if key in s]
        if points:
            right.plot(*zip(*points, strict=True), label=label)
    right.set(xlabel="seconds of soak", ylabel="RSS (MB)", title="Memory during the soak", ylim=(0, None))
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return {"soak": _save(fig, Path(directory) / SOAK_PLOT)}
