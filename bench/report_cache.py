"""The prediction-cache section of REPORT.md (and bench/results/cache.md): throughput with the
cache on and off for a Zipf stream of repeated rows and for distinct rows, the hit rates, and the
target that the cache costs at most 5 % on distinct rows (bench/cache.py)."""

from __future__ import annotations

from typing import Any

from bench.report import _missing, _when, format_cell, table

TITLE = "## Prediction cache: repeated rows (Zipf) and distinct rows, cache on and off"
STREAM_NAMES = {"zipf": "Zipf (repeated rows)", "distinct": "distinct rows"}


def cache_section(result: dict[str, Any] | None) -> str:
    if not result:
        return f"{TITLE}\n\n{_missing('python -m bench.cache')}"
    plan = result["plan"]
    rows = []
    for stream, lines in result["summary"].items():
        for level, line in lines.items():
            rows.append([STREAM_NAMES.get(stream, stream), level, line["off_rps"], line["on_rps"],
                         line["ratio"], _share(line["hit_rate"]), _share(line["ideal_hit_rate"]),
                         line["off_p50_ms"], line["on_p50_ms"], line["off_cpu_ms"], line["on_cpu_ms"],
                         line["errors"]])
    verdict = result["targets"]
    ratios = ", ".join(f"{format_cell(r)} at concurrency {level}"
                       for level, r in verdict["distinct_ratios"].items())
    notes = []
    started_over = [f"{stream} c={level}" for stream, lines in result["summary"].items()
                    for level, line in lines.items() if line["started_over"]]
    if started_over:
        notes.append(f"wrk started a stream over within a run ({', '.join(started_over)}): the rows "
                     "after the restart carry a marked longitude, so the hit rate there is below what "
                     "the stream alone would give; use a longer `--stream-rows`.")
    bypassed = sum(line["bypass"] for lines in result["summary"].values() for line in lines.values())
    if bypassed:
        notes.append(f"{bypassed} lookups bypassed the cache (its Redis did not answer).")
    return "\n".join([
        TITLE, "", _when(result), "",
        f"Two stacks on the same champion (batching on, each with its own Redis), one with "
        f"`PREDICTION_CACHE=true`, measured in turn: {plan['rounds']} round(s) of "
        f"{plan['duration_s']} s per stream and concurrency, medians. One row per request. The Zipf "
        f"stream draws {plan['stream_rows']:,} requests from the {result['distinct_rows']:,} "
        f"distinct test rows with popularity ∝ rank^-{plan['zipf_s']}; the distinct stream never "
        "repeats a row. The cache is emptied before each measured run, so hit rates include the "
        "cold start; the ideal rate is the share of the requests sent that repeat an earlier one. "
        "Server CPU is the proxy's and its model server's, per request.", "",
        table(["stream", "concurrency", "cache off req/s", "cache on req/s", "on / off", "hit rate",
               "ideal hit rate", "p50 off ms", "p50 on ms", "CPU off ms/req", "CPU on ms/req",
               "errors"], rows),
        "",
        f"Target: on distinct rows the cache costs at most 5 % (on / off ≥ "
        f"{verdict['distinct_ratio_target']}): {ratios} → "
        f"{'**met**' if verdict['met'] else '**not met**'}. Errors: {verdict['errors_total']}.",
        *(["", *notes] if notes else []),
    ])


def _share(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f} %"
