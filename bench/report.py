"""Write bench/results/REPORT.md and its PNG plots from the parts' JSON results.

    python -m bench.report [--results-dir DIR]

A part that has not been run yet gets a line saying how to run it; nothing is made up.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, machine_info, progress, read_result

REPORT_FILE = "REPORT.md"
QUALITY_FILES = ("quality.md",)  # written by bench/quality.py (H1); included as is when present
PLOTS = {
    "throughput": "throughput_vs_concurrency.png",
    "batches": "latency_vs_batch_size.png",
    "training": "training_time_vs_rows.png",
    "memory": "memory_under_load.png",
}
TARGET_NAMES = {"anchor": "anchor (sklearn Pipeline, `mlflow models serve`)",
                "proxy": "project: proxy (`make stack`)", "direct": "project: model server directly"}


def build_report(directory: Path) -> Path:
    """Read every part's results in `directory`, draw the plots, write the markdown; its path."""
    from bench import report_hardening as hardening  # it builds on this module's helpers
    from bench.report_cache import cache_section
    from bench.report_replicas import replicas_section
    from bench.report_throughput import throughput_section

    directory = Path(directory)
    parts = {name: read_result(directory, name)
             for name in ("serving", "proxy_floor", "soak", "faults", "batches", "pyfunc_latency",
                          "training", "replicas", "scoring", "throughput", "ratelimit_cost", "cache")}
    plots = {**draw_plots(directory, parts), **hardening.draw_soak_plot(directory, parts["soak"])}
    sections = [
        _header(parts),
        _targets(parts),
        _serving(parts["serving"], plots),
        throughput_section(parts["throughput"], parts["ratelimit_cost"]),
        cache_section(parts["cache"]),
        _proxy_floor(parts["proxy_floor"]),
        replicas_section(parts["replicas"]),
        _memory(parts["serving"], plots),
        hardening.soak_section(parts["soak"], plots),
        hardening.faults_section(parts["faults"]),
        _profiles(directory),
        _pyfunc(parts["pyfunc_latency"]),
        _batches(parts["batches"], plots),
        _training(parts["training"], plots),
        _scoring(parts["scoring"]),
        _quality(directory),
        _prediction_store(directory),
        _drift_demo(directory),
        _changes(),
        _reproduce(),
    ]
    path = directory / REPORT_FILE
    path.write_text("\n\n".join(s.strip() for s in sections if s) + "\n")
    return path


# --- markdown helpers ----------------------------------------------------------------------------

def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(format_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    return str(value)


def _missing(command: str) -> str:
    return f"_Not measured yet: run `{command}`._"


def _when(result: dict[str, Any]) -> str:
    quick = " — **quick smoke run, not a benchmark**" if result.get("quick") else ""
    load = result.get("load_avg_1m_at_start")
    cores = (result.get("machine") or {}).get("cores")
    load_text = f", load average {load} on {cores} cores at start" if load is not None else ""
    return f"_Measured {result.get('started_at') or result.get('measured_at')}{load_text}; data: " \
           f"{result.get('data', '?')}{quick}._"


# --- sections ------------------------------------------------------------------------------------

def _header(parts: dict[str, Any]) -> str:
    measured = [p for p in parts.values() if p]
    machine = measured[0]["machine"] if measured else machine_info()
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    quick = any(p.get("quick") for p in measured)
    lines = [
        "# Benchmark report",
        "",
        f"Written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} by `python -m bench.report`"
        " from the JSON results beside this file (aggregates only: no row of the client's data).",
        "",
        table(["machine", ""], [
            ["CPU", machine.get("cpu_model")],
            ["cores", machine.get("cores")],
            ["memory", f"{machine.get('memory_gb')} GB"],
            ["OS", machine.get("os")],
            ["Python", machine.get("python")],
            ["packages", packages],
        ]),
    ]
    loads = [p.get("load_avg_1m_at_start") for p in measured if p.get("load_avg_1m_at_start") is not None]
    if loads and machine.get("cores") and max(loads) > 0.5 * machine["cores"]:
        lines += ["", f"**Measured under contention**: the 1-minute load average was up to {max(loads):.1f} "
                      f"on {machine['cores']} cores when a part started, so throughput and latency are "
                      "pessimistic and noisy; CPU time per request is the steadier figure."]
    if quick:
        lines += ["", "**Some parts are quick smoke runs** (marked below): their numbers show the harness "
                      "works, not how fast the service is."]
    return "\n".join(lines)


def _targets(parts: dict[str, Any]) -> str:
    from bench.report_hardening import target_rows

    rows = []
    serving = parts["serving"]
    if serving:
        t = serving["targets"]
        rows += [
            ["single-row throughput via the proxy at concurrency 8 ≥ 2× the anchor (aim 4×)",
             f"{format_cell(t['throughput_ratio_at_8'])}×", t["throughput_target_2x"]],
            ["proxy p50 ≤ 1.25× the model server's p50 (every concurrency)",
             f"{format_cell(t['proxy_overhead_p50_max'])}× (worst)", t["proxy_overhead_target"]],
            ["no errors at any concurrency", f"{t['errors_total']} errors", t["no_errors"]],
            ["memory flat over the load run", _memory_text(serving["memory"]), t["memory_flat"]],
        ]
    batches = parts["batches"]
    if batches:
        t = batches["targets"]
        rows.append(["1,000-row batches via the proxy ≥ ½ the rows/s of in-process `pyfunc.predict`",
                     f"{format_cell(t['share_at_1000'])}×", t["share_at_1000_target_met"]])
    pyfunc = parts["pyfunc_latency"]
    if pyfunc:
        rows.append(["single-row `pyfunc.predict` ≥ 5× faster than a plain sklearn `Pipeline.predict`",
                     f"{format_cell(pyfunc['speedup_pipeline_over_pyfunc_p50'])}×", pyfunc["target_met"]])
    rows += target_rows(parts.get("soak"), parts.get("faults"))
    if not rows:
        return "## Targets\n\n_No results yet: run `make bench`._"
    return "## Targets\n\n" + table(["target", "measured", "met"], rows)


def _memory_text(memory: dict[str, Any]) -> str:
    return (f"proxy {memory['proxy']['first_mb']:.0f}→{memory['proxy']['last_mb']:.0f} MB, model server "
            f"{memory['model_server']['first_mb']:.0f}→{memory['model_server']['last_mb']:.0f} MB")


def _serving(serving: dict[str, Any] | None, plots: dict[str, str]) -> str:
    title = "## Serving single rows: anchor vs the project"
    if not serving:
        return f"{title}\n\n{_missing('python -m bench.serving')}"
    plan = serving["plan"]
    rows = []
    for connections in map(str, plan["concurrency"]):
        for name in ("anchor", "proxy", "direct"):
            r = serving["results"][name].get(connections)
            if r:
                rows.append([connections, TARGET_NAMES[name], r["requests_per_s"], r["p50_ms"], r["p95_ms"],
                             r["p99_ms"], r["errors_status"], r["errors_socket"],
                             r["server_cpu_ms_per_request"], r["wrk_cpu_s"] / r["duration_s"]])
    ratio_rows = [[c, r["proxy_over_anchor_rps"], r["direct_over_anchor_rps"], r["proxy_p50_over_direct_p50"],
                   r["anchor_cpu_over_proxy_cpu"]] for c, r in serving["ratios"].items()]
    text = [
        title, "", _when(serving), "",
        f"wrk replays {serving['distinct_bodies']:,} distinct test rows, one row per request "
        f"(bodies never repeat: a later pass over the rows changes the longitude below 1e-6 degrees), "
        f"{plan['duration_s']:g} s per measurement after {plan['warmup_s']:g} s of warm-up, one wrk thread. "
        "Server CPU is the CPU time of the serving processes (proxy + model server for the proxy path) "
        "per request; wrk's own CPU share shows the load generator was not the bottleneck.",
        "",
        table(["conc.", "target", "req/s", "p50 ms", "p95 ms", "p99 ms", "non-2xx", "socket err.",
               "server CPU ms/req", "wrk CPU (cores)"], rows),
        "",
        table(["conc.", "proxy / anchor req/s", "direct / anchor req/s", "proxy p50 / direct p50",
               "anchor CPU / proxy-path CPU per request"], ratio_rows),
    ]
    if "throughput" in plots:
        text += ["", f"![throughput vs concurrency]({plots['throughput']})"]
    return "\n".join(text)


def _memory(serving: dict[str, Any] | None, plots: dict[str, str]) -> str:
    if not serving:
        return ""
    memory = serving["memory"]
    rows = [[name.replace("_", " "), m["first_mb"], m["last_mb"], m["growth_mb"], m.get("max_mb"), m["flat"]]
            for name, m in (("proxy", memory["proxy"]), ("model_server", memory["model_server"]))]
    text = ["## Memory under load", "",
            f"{memory['duration_s']:.0f} s through the proxy at concurrency {memory['concurrency']} "
            f"({memory['requests']:,} requests, {memory['errors']} errors); RSS sampled every few seconds. "
            "First/last = mean of the first/last quarter of the samples; flat = growth within "
            "max(10 MB, 5 %).", "",
            table(["process", "first MB", "last MB", "growth MB", "max MB", "flat"], rows)]
    if "memory" in plots:
        text += ["", f"![memory under load]({plots['memory']})"]
    return "\n".join(text)


def _profiles(directory: Path) -> str:
    path = directory / "serving_profile.md"
    result = read_result(directory, "serving_profile")
    if not path.is_file() or not result:
        return "## Where serving time goes\n\n" + _missing("python -m bench.profile_serving")
    return f"## Where serving time goes\n\n{_when(result)}\n\n{path.read_text().strip()}"


def _pyfunc(result: dict[str, Any] | None) -> str:
    title = "## One row in process: the pyfunc vs a plain sklearn Pipeline"
    if not result:
        return f"{title}\n\n{_missing('python -m bench.pyfunc_latency')}"
    names = {
        "pyfunc_predict": "(a) `mlflow.pyfunc.load_model(...).predict([row])`: the declared input",
        "pyfunc_predict_dataframe": "(a2) the same with a one-row DataFrame (MLflow converts it)",
        "sklearn_pipeline_predict": "(b) plain `Pipeline.predict(df)` (OrdinalEncoder + same estimator)",
        "sklearn_pipeline_predict_1_thread": "(b′) the same Pipeline, `n_jobs=1` (not the config)",
        "python_model_predict": "(c) `ValuationModel.predict` beneath MLflow's decorator: our code alone",
        "validation_only": "inside (c): row validation",
        "features_and_estimator": "inside (c): validation + features + estimator",
    }
    rows = [[label, result["latency"][key]["p50_ms"], result["latency"][key]["p95_ms"],
             result["latency"][key]["p99_ms"]] for key, label in names.items() if key in result["latency"]]
    return "\n".join([
        title, "", _when(result), "",
        f"{result['rows_timed']:,} distinct test rows, one per call, variants interleaved; model config "
        f"`{result['model_config']}` (estimator `{result['estimator']}`"
        + (f", with {' '.join(result['overrides'])}" if result.get("overrides") else "")
        + f"). {_wrapper_text(result['mlflow_wrapper_ms_p50'])} Profile of (a): "
        f"[`{result['profile_file']}`]({result['profile_file']}).", "",
        table(["variant", "p50 ms", "p95 ms", "p99 ms"], rows), "",
        f"Pipeline p50 / pyfunc p50 = **{format_cell(result['speedup_pipeline_over_pyfunc_p50'])}×** "
        f"(target {result['target_speedup']:.0f}×: {'met' if result['target_met'] else 'not met'})"
        + ".",
    ])


FLOOR_NAMES = {"bare_starlette": "bare Starlette forwarder", "bare_fastapi": "bare FastAPI forwarder",
               "proxy": "the project's proxy"}


def _proxy_floor(result: dict[str, Any] | None) -> str:
    title = "## The floor of one Python proxy hop"
    if not result:
        return f"{title}\n\n" + _missing("python -m bench.proxy_floor")
    rows = []
    for c in result["plan"]["concurrency"]:
        direct = result["results"]["direct"][str(c)]
        for name, label in FLOOR_NAMES.items():
            measured = result["results"][name][str(c)]
            rows.append([c, label, measured["requests_per_s"], measured["p50_ms"], direct["p50_ms"],
                         result["p50_over_direct"][str(c)][name]])
    return "\n".join([
        title, "", _when(result), "",
        "The model server called directly, and through forwarders that only pass the body on "
        "(`bench/forwarders.py`: uvicorn, one route, a pooled aiohttp client; no key check, row "
        "checks, audit or logging), measured with wrk in turn. Their p50 over the direct p50 is what "
        "any proxy built this way pays before doing its work.", "",
        table(["conc.", "through", "req/s", "p50 ms", "direct p50 ms", "p50 / direct"], rows),
    ])


def _wrapper_text(wrapper_ms: float | None) -> str:
    if wrapper_ms is None:
        return ""
    if wrapper_ms <= 0:  # medians of separately timed variants: a difference below zero is noise
        return (f"MLflow's wrapper (a − c) has no measurable cost: the medians differ by "
                f"{format_cell(wrapper_ms)} ms.")
    return f"MLflow's wrapper (a − c) costs {format_cell(wrapper_ms)} ms at the median."


def _batches(result: dict[str, Any] | None, plots: dict[str, str]) -> str:
    title = "## Batches: proxy vs model server vs in-process"
    if not result:
        return f"{title}\n\n{_missing('python -m bench.batches')}"
    rows = []
    for size in map(str, result["plan"]["sizes"]):
        proxy, direct, local = (result["results"][k].get(size) for k in ("proxy", "direct", "in_process"))
        if proxy and direct and local:
            rows.append([f"{int(size):,}", proxy["p50_ms"], proxy["rows_per_s"], direct["p50_ms"],
                         direct["rows_per_s"], local["p50_ms"], local["rows_per_s"],
                         result["proxy_share_of_in_process"].get(size), proxy.get("body_kb")])
    text = [title, "", _when(result), "",
            "Sequential requests (concurrency 1), keep-alive client, bodies serialized beforehand; each "
            "request carries different rows. rows/s = batch size / median latency.", "",
            table(["rows", "proxy p50 ms", "proxy rows/s", "direct p50 ms", "direct rows/s",
                   "in-process p50 ms", "in-process rows/s", "proxy / in-process", "body KB"], rows)]
    if "batches" in plots:
        text += ["", f"![latency vs batch size]({plots['batches']})"]
    return "\n".join(text)


def _training(result: dict[str, Any] | None, plots: dict[str, str]) -> str:
    title = "## Training cost"
    if not result:
        return f"{title}\n\n{_missing('python -m bench.training')}"
    rows = []
    for model, r in result["models"].items():
        run, bare = r["mlflow_run"], r["bare_fit"]
        rows.append([model, run.get("wall_s") if run.get("ok") else "failed", run.get("fit_s"),
                     run.get("peak_tree_rss_mb"), bare.get("wall_s") if bare.get("ok") else "failed",
                     bare.get("fit_s"), bare.get("peak_tree_rss_mb")])
    scaling = result["scaling"]
    scale_rows = [[f"{p['scale']:g}×", f"{p['rows']:,}",
                   p["mlflow_run"].get("wall_s") if p["mlflow_run"].get("ok") else "failed",
                   p["mlflow_run"].get("fit_s"), p["mlflow_run"].get("peak_tree_rss_mb"),
                   p["bare_fit"].get("fit_s"), p["bare_fit"].get("peak_tree_rss_mb")]
                  for p in scaling["points"]]
    fit_rows = [[key, f["loglog_slope"], f["per_100k_rows"], f["intercept"], f["r2"]]
                for key, f in (result.get("scaling_fit") or {}).items()]
    text = [title, "", _when(result), "",
            f"`mlflow run . --env-manager local -P model=NAME` with `cv.folds=0` (one fit, as the bare "
            f"fit) on {result['data']} data, against a bare fit of the same estimator class and params "
            "(plain Pipeline, ordinal categoricals) in a fresh process. Peak memory = highest sampled RSS "
            "summed over the process tree. Fit = the train step's `fit_seconds`; the rest of a run is "
            "start-up, checks, logging, evaluation and registration.", "",
            table(["model", "mlflow run s", "of which fit s", "run peak MB", "bare fit process s",
                   "bare fit s", "bare peak MB"], rows), "",
            f"### Scaling: `{scaling['model']}` at multiples of {scaling['base_rows']:,} training rows "
            f"(synthetic, same distribution; test fixed at {scaling['test_rows']:,} rows)", "",
            table(["scale", "rows", "mlflow run s", "fit s", "run peak MB", "bare fit s", "bare peak MB"],
                  scale_rows)]
    failures = [(model, what, r[key].get("error", "?")) for model, r in result["models"].items()
                for what, key in (("mlflow run", "mlflow_run"), ("bare fit", "bare_fit"))
                if not r[key].get("ok")]
    failures += [(f"scaling {p['scale']:g}×", what, p[key].get("error", "?")) for p in scaling["points"]
                 for what, key in (("mlflow run", "mlflow_run"), ("bare fit", "bare_fit"))
                 if not p[key].get("ok")]
    for model, what, error in failures:
        text += ["", f"- **{model}: {what} failed**: `{error}`"]
    for skipped in scaling.get("skipped", []):
        text += ["", f"- {skipped['scale']:g}× not measured: {skipped['reason']}."]
    if fit_rows:
        text += ["", "Growth: log-log slope (1 = linear) and a straight-line fit value = intercept + "
                     "slope × rows/100k with its R².", "",
                 table(["quantity", "log-log slope", "per 100k rows", "intercept", "R²"], fit_rows)]
    if "training" in plots:
        text += ["", f"![training time vs rows]({plots['training']})"]
    return "\n".join(text)


def _scoring(result: dict[str, Any] | None) -> str:
    title = "## Batch scoring (`valuation score`)"
    if not result:
        return f"{title}\n\n{_missing('python -m bench.scoring')}"
    rows = [[r["engine"], f"{r['rows']:,}", r.get("wall_s") if r.get("ok") else "failed",
             r.get("rows_per_s"), r.get("peak_tree_rss_mb")] for r in result["runs"]]
    text = [title, "", _when(result), "",
            f"`valuation score` on synthetic parquet portfolios (model trained on {result['data']} "
            "data), each run its own process: wall time from start to the output's rename (model "
            "loading and, for Spark, the JVM's start included), peak RSS summed over the process tree "
            "(Spark's JVM and Python workers included). `pyfunc.predict (in memory)` is the upper "
            "bound: the whole frame read first, then the pyfunc's own predict in the largest slices its "
            "rules take, timed without the reading.", "",
            table(["engine", "rows", "wall s", "rows/s", "peak MB"], rows)]
    local = sorted((r for r in result["runs"] if r["engine"] == "local" and r.get("ok")),
                   key=lambda r: r["rows"])
    if len(local) >= 2:
        small, large = local[0], local[-1]
        text += ["", f"Local engine memory from {small['rows']:,} to {large['rows']:,} rows "
                     f"({large['rows'] / small['rows']:.0f}× the rows): {small['peak_tree_rss_mb']:.0f} MB "
                     f"→ {large['peak_tree_rss_mb']:.0f} MB "
                     f"({large['peak_tree_rss_mb'] / small['peak_tree_rss_mb']:.2f}×): flat, as the "
                     "input is read, priced and written one batch at a time."]
    portfolio = result.get("portfolio")
    if portfolio:
        text += ["", f"The client's test.csv as a portfolio: {portfolio.get('summary') or portfolio}"]
    return "\n".join(text)


def _quality(directory: Path) -> str:
    for name in QUALITY_FILES:
        path = directory / name
        if path.is_file():
            body = path.read_text().strip()
            # Demote the quality report's headings so they nest under this section.
            body = "\n".join(("##" + line) if line.startswith("#") else line for line in body.splitlines())
            return f"## Quality\n\n_From `bench/quality.py` ({name})._\n\n{body}"
    return "## Quality\n\n_Not measured yet: run `python -m bench.quality --data-dir DIR`._"


def _prediction_store(directory: Path) -> str:
    """The store's cost: its own report (prediction_store.md), nested under this report."""
    title = "## Monitoring: the prediction store's cost"
    path = directory / "prediction_store.md"
    if not path.is_file():
        return f"{title}\n\n{_missing('python -m bench.prediction_store')}"
    body = path.read_text().strip().splitlines()[1:]  # its own title is this section's
    return "\n".join([title, *body])


def _drift_demo(directory: Path) -> str:
    """The drift demo's headline figures and a link to its own section (drift_demo.md)."""
    title = "## Monitoring: the drift demo"
    demo = read_result(directory, "drift_demo")
    if not demo or not (directory / "drift_demo.md").is_file():
        return f"{title}\n\n{_missing('make drift-demo')}"
    s = demo["summary"]
    return "\n".join([
        title, "", _when(demo), "",
        f"A market shift ({demo['scenario']['described']}) replayed through the stack: the drift "
        f"alarm fired after {format_cell(s['alarm_after_shifted_rows'])} shifted predictions; live "
        f"MdAPE {format_cell(s['medape_before'])} before, {format_cell(s['medape_after'])} after; "
        f"retraining triggered: {format_cell(s['retraining_reason'] is not None)}, challenger "
        f"registered: {format_cell(s['challenger_registered'])}; shadowed: "
        f"{format_cell(s.get('shadowed'))}, promotion gate passed: "
        f"{format_cell(s.get('gate_passed'))}, promoted: {format_cell(s.get('promoted'))}; "
        f"control false alarms: {s['false_alarms']}. Figures, timeline and method: "
        "[drift_demo.md](drift_demo.md).",
    ])


CHANGES_FILE = Path(__file__).resolve().parent / "CHANGES.md"  # hand-kept: what each change bought


def _changes() -> str:
    return CHANGES_FILE.read_text() if CHANGES_FILE.is_file() else ""


def _reproduce() -> str:
    return "\n".join([
        "## Reproduce",
        "",
        "```bash",
        "apt-get install wrk            # the load generator (brew install wrk on macOS)",
        "make install",
        "make bench                     # everything, on ../shared/data/property-friends (REAL_DATA=dir)",
        "python -m bench.serving        # or one part: serving | replicas | soak | faults | batches | ...",
        "python -m bench.soak --soak-s 600   # a longer soak (80 % of the throughput in serving.json)",
        "python -m bench.run --quick    # a smoke run of every part (results in bench/results/quick/)",
        "python -m bench.report         # rewrite this report from the JSON results",
        "```",
    ])


# --- plots ---------------------------------------------------------------------------------------

def draw_plots(directory: Path, parts: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn: dict[str, str] = {}
    serving = parts["serving"]
    if serving:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        levels = [int(c) for c in serving["plan"]["concurrency"]]
        for name in ("anchor", "proxy", "direct"):
            results = serving["results"][name]
            left.plot(levels, [results[str(c)]["requests_per_s"] for c in levels], marker="o",
                      label=TARGET_NAMES[name])
            right.plot(levels, [results[str(c)]["p50_ms"] for c in levels], marker="o", label=name)
        left.set(xlabel="concurrent connections", ylabel="requests/s",
                 title="Throughput, one row per request", xscale="log")
        right.set(xlabel="concurrent connections", ylabel="p50 latency (ms)", title="Median latency",
                  xscale="log", yscale="log")
        for axis in (left, right):
            axis.set_xticks(levels, [str(c) for c in levels])
            axis.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
            axis.grid(alpha=0.3)
        left.legend(fontsize=8)
        drawn["throughput"] = _save(fig, directory / PLOTS["throughput"])

        samples = serving["memory"]["samples"]
        fig, axis = plt.subplots(figsize=(7, 3.5))
        for key, label in (("proxy_mb", "proxy"), ("model_server_mb", "model server (tree)")):
            points = [(s["t_s"], s[key]) for s in samples if key in s]
            if points:
                axis.plot(*zip(*points, strict=True), label=label)
        axis.set(xlabel="seconds under load", ylabel="RSS (MB)", title="Memory under load", ylim=(0, None))
        axis.grid(alpha=0.3)
        axis.legend()
        drawn["memory"] = _save(fig, directory / PLOTS["memory"])

    batches = parts["batches"]
    if batches:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        sizes = [int(s) for s in batches["plan"]["sizes"] if str(s) in batches["results"]["proxy"]]
        for key, label in (("proxy", "proxy"), ("direct", "model server directly"),
                           ("in_process", "in-process pyfunc.predict")):
            results = batches["results"][key]
            left.plot(sizes, [results[str(s)]["p50_ms"] for s in sizes], marker="o", label=label)
            right.plot(sizes, [results[str(s)]["rows_per_s"] for s in sizes], marker="o", label=label)
        left.set(xlabel="rows per request", ylabel="p50 latency (ms)", title="Latency vs batch size",
                 xscale="log", yscale="log")
        right.set(xlabel="rows per request", ylabel="rows/s", title="Rows/s vs batch size",
                  xscale="log", yscale="log")
        for axis in (left, right):
            axis.grid(alpha=0.3)
        left.legend(fontsize=8)
        drawn["batches"] = _save(fig, directory / PLOTS["batches"])

    training = parts["training"]
    points = [p for p in (training or {}).get("scaling", {}).get("points", []) if p["mlflow_run"].get("ok")]
    if points:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        rows = [p["rows"] for p in points]
        left.plot(rows, [p["mlflow_run"]["wall_s"] for p in points], marker="o", label="mlflow run (wall)")
        left.plot(rows, [p["mlflow_run"].get("fit_s") or 0 for p in points], marker="o",
                  label="of which fit")
        left.plot(rows, [p["bare_fit"].get("fit_s") or 0 for p in points], marker="o", label="bare fit")
        right.plot(rows, [p["mlflow_run"]["peak_tree_rss_mb"] for p in points], marker="o",
                   label="mlflow run")
        right.plot(rows, [p["bare_fit"].get("peak_tree_rss_mb") or 0 for p in points], marker="o",
                   label="bare fit")
        left.set(xlabel="training rows", ylabel="seconds", title="Training time vs rows",
                 xscale="log", yscale="log")
        right.set(xlabel="training rows", ylabel="peak RSS (MB)", title="Peak memory vs rows",
                  xscale="log", yscale="log")
        for axis in (left, right):
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        drawn["training"] = _save(fig, directory / PLOTS["training"])
    return drawn


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for axis in fig.axes:  # plain numbers on log axes ("30", not "3x10^1")
        for which in (axis.xaxis, axis.yaxis):
            if which.get_scale() == "log":
                formatter = ScalarFormatter()
                formatter.set_scientific(False)
                which.set_major_formatter(formatter)
                which.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def main() -> None:
    cli = argparse.ArgumentParser(description="Write REPORT.md and plots from the benchmark results.")
    cli.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = cli.parse_args()
    path = build_report(args.results_dir)
    progress(f"wrote {path}")


if __name__ == "__main__":
    main()
