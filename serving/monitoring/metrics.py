"""The monitoring figures as Prometheus metrics on the proxy's /metrics.

The job runs in the RQ worker (a forked work horse per job), which Prometheus does not scrape.
Rather than push to a Pushgateway (one more service) or share a multiprocess directory (one host
only), the job writes its latest figures to Redis, which every proxy replica already uses, and
each proxy's `MonitoringCollector` reads them when /metrics is scraped: one GET and one HGETALL
per scrape, the same figures on every replica, nothing lost when the worker restarts.

- `valuation_feature_drift{model_version,feature,statistic}` (psi, ks_statistic, ks_pvalue,
  wasserstein_normalized, jensenshannon), `valuation_feature_drifted{model_version,feature}` (0/1)
- `valuation_prediction_drift{model_version,statistic}`
- `valuation_live_error{model_version,metric}` (mae, medape, ppe10, rmse) and
  `valuation_test_error{model_version,metric}`, the version's test figures beside them
- `valuation_feedback_rows{model_version}`, `valuation_monitoring_window_rows{model_version}`
- `valuation_monitoring_last_run_timestamp_seconds{model_version}`
- `valuation_retraining_triggered_total{reason}`: a counter kept in Redis (HINCRBY), so it only
  grows whichever process triggered and whichever replica is scraped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.logging import get_logger

log = get_logger(__name__)

LATEST = "latest"
RETRAINING_COUNTS = "retraining_triggered"


def latest_key(prefix: str) -> str:
    return f"{prefix}:{LATEST}"


def retraining_key(prefix: str) -> str:
    return f"{prefix}:{RETRAINING_COUNTS}"


def publish_figures(redis: Any, prefix: str, figures: dict[str, Any]) -> None:
    """Store the latest run's figures (see `gauge_figures`) for the proxies to expose."""
    redis.set(latest_key(prefix), json.dumps(figures, allow_nan=True))


def read_latest(redis: Any, prefix: str) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """The latest run's figures (None before the first run) and the retraining counts by reason,
    as the proxies stored them; NaN (a statistic that could not be computed) reads as None."""
    raw = redis.get(latest_key(prefix))
    counts = {_text(reason): int(_text(count))
              for reason, count in redis.hgetall(retraining_key(prefix)).items()}
    return (_without_nan(json.loads(raw)) if raw else None), counts


def _without_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nan(item) for item in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def count_retraining(redis: Any, prefix: str, reason: str) -> None:
    redis.hincrby(retraining_key(prefix), reason, 1)


def gauge_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a monitoring report the gauges show (small: read on every scrape)."""
    drift = report.get("drift") or {}
    live = report.get("live_error") or {}
    return {
        "model_version": report["version"],
        "at": report["at_epoch"],
        "window_rows": report.get("window_rows", 0),
        "drift_note": report.get("drift_note"),
        "feedback_rows": (live.get("overall") or {}).get("rows", 0),
        "features": {name: feature["statistics"]
                     for name, feature in (drift.get("features") or {}).items()},
        "drifted": drift.get("drifted_features", []),
        "prediction": (drift.get("prediction") or {}).get("statistics", {}),
        "live_error": {m: v for m, v in (live.get("overall") or {}).items() if m != "rows"},
        "test_error": {m: v for m, v in (live.get("test") or {}).items() if m != "rows"},
    }


class MonitoringCollector(Collector):
    """Reads the latest figures from Redis at scrape time. `redis` returns the client (None
    before the app started); a Redis outage leaves the monitoring metrics out of that scrape
    (logged), never fails /metrics."""

    def __init__(self, redis: Callable[[], Any], prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def collect(self) -> Iterator[Any]:
        client = self._redis()
        if client is None:
            return
        try:
            raw = client.get(latest_key(self._prefix))
            counts = client.hgetall(retraining_key(self._prefix))
        except Exception as error:  # redis.exceptions.*: scrape without these metrics
            log.warning("monitoring_metrics_unavailable", error=repr(error))
            return
        triggered = CounterMetricFamily("valuation_retraining_triggered",
                                        "Retrainings the monitoring policy enqueued, by reason",
                                        labels=["reason"])
        for reason, count in sorted(counts.items()):
            triggered.add_metric([_text(reason)], float(_text(count)))
        yield triggered
        if raw:
            yield from _gauges(json.loads(raw))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _gauges(figures: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    version = str(figures["model_version"])

    def family(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=["model_version", *labels])

    feature = family("valuation_feature_drift", "Drift statistic of a feature: the latest "
                     "monitoring window against the version's reference", ["feature", "statistic"])
    drifted = family("valuation_feature_drifted", "1 when the feature's deciding statistic "
                     "crossed its threshold in the latest monitoring run", ["feature"])
    for name, statistics in sorted(figures["features"].items()):
        for statistic, value in sorted(statistics.items()):
            feature.add_metric([version, name, statistic], _number(value))
        drifted.add_metric([version, name], float(name in figures["drifted"]))
    prediction = family("valuation_prediction_drift", "Drift statistic of the predicted price "
                        "against the version's test-set predictions", ["statistic"])
    for statistic, value in sorted(figures["prediction"].items()):
        prediction.add_metric([version, statistic], _number(value))
    live = family("valuation_live_error", "Error on predictions with feedback (observed prices)",
                  ["metric"])
    for metric, value in sorted(figures["live_error"].items()):
        live.add_metric([version, metric], _number(value))
    test = family("valuation_test_error", "The version's error on its test set", ["metric"])
    for metric, value in sorted(figures["test_error"].items()):
        test.add_metric([version, metric], _number(value))
    feedback = family("valuation_feedback_rows", "Predictions of the version with feedback "
                      "in the latest monitoring run", [])
    feedback.add_metric([version], float(figures["feedback_rows"]))
    window = family("valuation_monitoring_window_rows", "Predictions in the latest monitoring "
                    "window", [])
    window.add_metric([version], float(figures["window_rows"]))
    last = family("valuation_monitoring_last_run_timestamp_seconds", "When the latest "
                  "monitoring run ended (Unix time)", [])
    last.add_metric([version], float(figures["at"]))
    yield from (feature, drifted, prediction, live, test, feedback, window, last)


def _number(value: Any) -> float:
    number = float("nan") if value is None else float(value)
    return number if not math.isinf(number) else math.copysign(1e308, number)
