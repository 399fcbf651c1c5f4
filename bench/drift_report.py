"""The drift demo's timeline plot and its report section (bench/results/drift_demo.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import machine_info

THRESHOLD = 0.1  # normalized Wasserstein and Jensen-Shannon (conf/drift.yaml)


def write_timeline(path: Path, data: dict[str, Any]) -> str:
    """Two panels over the predictions served: the deciding drift statistics of every monitoring
    run against the threshold, and live MdAPE (per chunk, and the monitoring run's over all
    feedback) against the test figure and the retraining margin. Returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (drift_axis, error_axis) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    runs, chunks = data["runs"], data["chunks"]
    served = [run["served"] for run in runs]
    for statistic in sorted({s for run in runs for s in run["statistics"]}):
        if statistic.endswith(("wasserstein_normalized", "jensenshannon")):
            drift_axis.plot(served, [run["statistics"].get(statistic) for run in runs],
                            marker=".", linewidth=1, label=label(statistic))
    drift_axis.axhline(THRESHOLD, color="red", linestyle="--", linewidth=1, label="threshold 0.1")
    error_axis.plot([c["served"] for c in chunks], [c["medape"] for c in chunks],
                    drawstyle="steps-pre", label="live MdAPE of the chunk's feedback")
    error_axis.plot(served, [run.get("live_medape") for run in runs], marker=".",
                    label="live MdAPE the monitoring run sees (all feedback)")
    test = next((run["test_medape"] for run in runs if run.get("test_medape")), None)
    if test:
        error_axis.axhline(test, color="grey", linestyle=":", label="test-set MdAPE")
        error_axis.axhline(test * (1 + data["policy"]["margin"]), color="red", linestyle="--",
                           linewidth=1, label="retraining margin (+10%)")
    shift_start = data["plan"]["period_rows"]
    for axis in (drift_axis, error_axis):
        axis.axvspan(0, shift_start, color="grey", alpha=0.08)
        axis.axvline(shift_start, color="black", linewidth=1)
        _events(axis, data)
    drift_axis.set_title("control (stable traffic, shaded), then the market shift (black line)")
    drift_axis.set_ylabel("drift statistic (the deciding one)")
    error_axis.set_ylabel("MdAPE")
    error_axis.set_xlabel("predictions served")
    drift_axis.legend(fontsize=7, loc="upper left")
    error_axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def label(statistic: str) -> str:
    """`feature.statistic` as a legend says it; a bare statistic is the predicted price's."""
    feature, _, name = statistic.rpartition(".")
    return f"{feature or 'predicted price'} {name}"


def _events(axis: Any, data: dict[str, Any]) -> None:
    alarm = next((run for run in data["runs"] if run["alarm"]), None)
    if alarm:
        axis.axvline(alarm["served"], color="orange", linestyle="-.", linewidth=1.2)
        axis.annotate("drift alarm", (alarm["served"], 0.98), xycoords=("data", "axes fraction"),
                      fontsize=7, color="orange", rotation=90, va="top")
    retraining = data.get("retraining")
    if retraining:
        axis.axvline(retraining["served"], color="green", linestyle="-.", linewidth=1.2)
        axis.annotate("retraining triggered", (retraining["served"], 0.6),
                      xycoords=("data", "axes fraction"), fontsize=7, color="green", rotation=90)
    challenge = data.get("challenge") or {}
    for key, text, colour in (("shadow_start", "challenger shadowed", "purple"),
                              ("promoted_start", "challenger promoted", "blue")):
        if challenge.get(key) is not None:
            axis.axvline(challenge[key], color=colour, linestyle="-.", linewidth=1.2)
            axis.annotate(text, (challenge[key], 0.6), xycoords=("data", "axes fraction"),
                          fontsize=7, color=colour, rotation=90)


def write_markdown(path: Path, data: dict[str, Any]) -> None:
    s, scenario, plan = data["summary"], data["scenario"], data["plan"]
    machine = data.get("machine") or machine_info()
    retraining = data["retraining"] or {}
    quick = " — **quick smoke run, not the demo**" if data.get("quick") else ""
    if data.get("partial"):
        quick += " — **cut short: the figures up to the last monitoring run**"
    period = plan["period_rows"]
    lines = [
        "## Drift demo: a market shift caught, a challenger trained, shadowed, gated and "
        "promoted (`make drift-demo`)",
        "",
        f"_Run {data['started_at']} on {machine.get('cpu_model', '?')} ({machine.get('cores', '?')} "
        f"cores, load average {data.get('load_avg_1m_at_start')} at the start, other work running); "
        f"data: {data['data']}{quick}._",
        "",
        f"The champion (version {data['champion_version']}) is trained on train.csv by the "
        "pipeline (no CV, no interval calibration: minutes, not tens of minutes). One stream of "
        f"{2 * period:,} predictions, drawn at run time from test.csv (never written), goes through "
        f"a fresh stack (`python -m serving.devstack`): {plan['rows_per_request']} rows a /predict "
        "request, every other row's observed price sent to /feedback, and the monitoring job run "
        f"by the stack's worker on demand (POST /monitoring/run) every {plan['step']} rows "
        f"instead of hourly, with the shipped settings (window: the last "
        f"{data['window']['rows']:,} predictions, judged from {data['window']['min_rows']}; "
        "thresholds of conf/drift.yaml; the retraining policy of conf/serving.yaml).",
        "",
        f"**Control**: the first {period:,} predictions are stable traffic (test rows drawn "
        "uniformly, observed at their own price), monitored at the same cadence: every alarm "
        f"there is a false alarm. **The shift**, for the next {period:,}: "
        f"{scenario['described']}.",
        "",
        "| | figure |",
        "|---|---|",
        f"| drift alarm fired after | {_rows(s['alarm_after_shifted_rows'])} shifted predictions "
        f"(runs every {plan['step']}); drifted: {', '.join(s['alarm_features'] or []) or '–'}"
        f"{'; predicted price drifted' if s['alarm_prediction_drift'] else ''} |",
        f"| live MdAPE before the shift | {_pct(s['medape_before'])} (test-set MdAPE "
        f"{_pct(s['test_medape'])}) |",
        f"| live MdAPE after the shift | {_pct(s['medape_after'])} (the two sectors: "
        f"{_pct(s['medape_after_shifted_sectors'])}; the others: "
        f"{_pct(s['medape_after_other_sectors'])}) |",
        f"| retraining triggered automatically | {_retrained(s, retraining)} |",
        f"| challenger registered | {_challenger(s, retraining)} |",
        f"| control: false alarms | {s['false_alarms']} in {s['control_runs']} monitoring runs "
        "(drift or retraining) |",
        *_act_two_rows(s, data),
        "",
        f"![drift demo timeline]({data['plot']})",
        "",
        "**The control.** " + _quiet(s, data),
        "",
        f"**Act two.** {_act_two_text(data)}",
        "",
    ]
    path.write_text("\n".join(lines))


def _act_two_rows(s: dict[str, Any], data: dict[str, Any]) -> list[str]:
    if not s.get("shadowed"):
        return ["| challenger shadowed, gated, promoted | **no**: no challenger was registered |"]
    act = data["plan"].get("act_rows")
    shadow = s.get("shadow_pricings") or {}
    gate = (f"{s['gate_rows']} labelled rows priced by both; {s['gate_metric']} champion "
            f"{_pct(s['gate_champion_figure'], 2)}, challenger {_pct(s['gate_challenger_figure'], 2)}, "
            f"improvement {_pct(s['gate_improvement'], 2)} (margin {_pct(s['gate_margin'])}): "
            f"**{'passed' if s['gate_passed'] else 'refused'}**")
    return [
        f"| challenger shadowed | {act:,} shifted predictions answered by the champion and priced "
        f"by the challenger in the background ({int(shadow.get('ok', 0)):,} requests shadowed, "
        f"{int(sum(v for k, v in shadow.items() if k != 'ok')):,} skipped or failed) |",
        f"| promotion gate | {gate} |",
        f"| challenger promoted (`valuation promote --challenger`) | "
        f"{'yes' if s['promoted'] else '**no**'} |",
        f"| live MdAPE after the promotion | {_pct(s['medape_after_promotion'])} (the two "
        f"sectors: {_pct(s['medape_after_promotion_shifted_sectors'])}; the others: "
        f"{_pct(s['medape_after_promotion_other_sectors'])}), against "
        f"{_pct(s['medape_after'])} after the shift and {_pct(s['medape_before'])} before it |",
    ]


def _act_two_text(data: dict[str, Any]) -> str:
    return ("The challenger trains on train.csv, its prices restated by the per-sector market "
            "index the monitoring job estimated from the latest observed prices, plus the "
            "feedback of act one, drawn from one half of test.csv's rows; act two's traffic is "
            "drawn from the other half, so the gate and the after-promotion figures judge it on "
            "rows it never saw. The operator's commands are the real CLI (`valuation traffic "
            "set --shadow 1`, `valuation promote --challenger`, `valuation traffic reset`); the "
            "gate's figures are those the command judged by (the same function, read just "
            "before it acts).")


def _quiet(s: dict[str, Any], data: dict[str, Any]) -> str:
    """Why the control raised no alarm, or, if it did, which statistic crossed its line."""
    highest = sorted(s["control_max_statistics"].items(), key=lambda item: -item[1])[:3]
    shown = ", ".join(f"{label(name)} {value:.3f}" for name, value in highest) or "–"
    top = highest[0][1] if highest else 0.0
    ratio = s["control_max_live_over_test"]
    limit = 1 + data["policy"]["margin"]
    drift = (f"well under the {THRESHOLD} of normalized Wasserstein and Jensen-Shannon"
             if top <= THRESHOLD else
             f"**over** the {THRESHOLD} of normalized Wasserstein and Jensen-Shannon: a false "
             f"alarm from sampling noise on too small a window (raise `window.min_rows`)")
    error = ("under" if ratio is None or ratio <= limit else "**over**")
    return (f"The stable traffic is drawn from the very distribution the reference profile "
            f"summarises, so a statistic only moves by sampling noise, which shrinks as 1/√n: on "
            f"windows of {data['window']['min_rows']}+ rows the largest seen were {shown}, {drift} "
            f"(Evidently's large-sample defaults; the KS p-value, which fires on trivial "
            f"differences at these sizes, only decides for references of 1,000 rows or fewer). "
            f"The live MdAPE is at most {'–' if ratio is None else f'{ratio:.2f}×'} the test "
            f"figure, {error} the policy's {limit:.2f}× with at least "
            f"{data['policy']['min_feedback_rows']} feedback rows.")


def _retrained(s: dict[str, Any], retraining: dict[str, Any]) -> str:
    if not retraining:
        return "**no**"
    after = s["retraining_after_shifted_rows"]
    if after is not None and after <= 0:
        return (f"yes, but {_rows(-after)} predictions *before* the shift "
                f"({s['retraining_reason']}): a false alarm")
    return (f"yes, after {_rows(after)} shifted predictions ({s['retraining_reason']})")


def _challenger(s: dict[str, Any], retraining: dict[str, Any]) -> str:
    registered = f"version {s['challenger_version']}" if s["challenger_registered"] else "**no**"
    index = retraining.get("market_index") if retraining else None
    if index:
        registered += "; training prices restated by the market index " + ", ".join(
            f"{sector} ×{factor:.3f}" for sector, factor in sorted(index.items()))
    job = f" (training job {retraining.get('status')})" if retraining else ""
    if s["champion_unchanged"] is None:  # act two moves it through the gate
        return f"{registered}{job}"
    champion = "unchanged" if s["champion_unchanged"] else "MOVED"
    return f"{registered}{job}; champion {champion}"


def _rows(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _pct(value: float | None, decimals: int = 1) -> str:
    return "–" if value is None else f"{value:.{decimals}%}"
