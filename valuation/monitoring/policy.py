"""The retraining policy as a pure decision: given a monitoring run's drift and live error, should
the served version be retrained, and why. The cool-down and the enqueueing live on the serving
side (serving/monitoring/retraining.py); this module only reads figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from valuation.monitoring.drift import DriftResult
from valuation.monitoring.live_error import LIVE_METRICS, LiveError, worse_than_test
from valuation.monitoring.profile import ReferenceProfile

# Label values of valuation_retraining_triggered_total{reason}: a fixed, small set.
REASON_DRIFT = "drift"
REASON_LIVE_ERROR = "live_error"
REASON_BOTH = "drift_and_live_error"


@dataclass(frozen=True)
class RetrainingPolicy:
    enabled: bool = True
    watched_features: int = 3  # the features with the most permutation importance
    min_drifted_features: int = 1  # of the watched ones
    live_metric: str = "medape"
    margin: float = 0.10  # live figure worse than the test figure by more than this share
    # Retraining learns from the feedback rows; fewer than this and neither criterion fires
    # (live error on a handful of rows is noise, and a retraining on drift alone would see no
    # new prices to learn the shift from).
    min_feedback_rows: int = 200

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RetrainingPolicy:
        fields = cls.__dataclass_fields__
        policy = cls(**{k: type(getattr(cls, k))(values[k]) for k in fields if k in values})
        if policy.live_metric not in LIVE_METRICS:
            raise ValueError(f"retraining.live_metric={policy.live_metric!r}: expected one of "
                             f"{', '.join(LIVE_METRICS)}")
        if policy.margin < 0 or policy.watched_features < 1 or policy.min_drifted_features < 1:
            raise ValueError("retraining: margin must be >= 0, watched_features and "
                             "min_drifted_features >= 1")
        return policy


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str | None  # one of the REASON_* labels when retrain
    explanation: str  # one sentence with the figures, for the run, the audit and the logs
    watched_features: list[str]
    drifted_watched: list[str]


def decide(policy: RetrainingPolicy, profile: ReferenceProfile, drift: DriftResult | None,
           live: LiveError | None, feedback_rows: int) -> Decision:
    watched = profile.most_important(policy.watched_features)
    drifted = [name for name in watched if drift is not None and name in drift.features
               and drift.features[name].drifted]
    findings, reasons = [], []
    if len(drifted) >= policy.min_drifted_features:
        reasons.append(REASON_DRIFT)
        findings.append(f"drift on {len(drifted)} of the {len(watched)} most important features "
                        f"({', '.join(_described(drift, name) for name in drifted)})")
    metric = policy.live_metric
    if live is not None and worse_than_test(live, metric, policy.margin):
        reasons.append(REASON_LIVE_ERROR)
        findings.append(f"live {metric} {getattr(live.overall, metric):.4g} vs test "
                        f"{getattr(live.test, metric):.4g} (margin {policy.margin:.0%}) "
                        f"on {live.overall.rows} rows with feedback")
    if not findings:
        return Decision(False, None, "no criterion met: " + _quiet(policy, drift, live, metric),
                        watched, drifted)
    if not policy.enabled:
        return Decision(False, None, f"retraining disabled by policy; would retrain on "
                        f"{'; '.join(findings)}", watched, drifted)
    if feedback_rows < policy.min_feedback_rows:
        return Decision(False, None, f"{'; '.join(findings)}, but only {feedback_rows} feedback "
                        f"rows (policy needs {policy.min_feedback_rows})", watched, drifted)
    reason = REASON_BOTH if len(reasons) == 2 else reasons[0]
    return Decision(True, reason, "; ".join(findings), watched, drifted)


def _described(drift: DriftResult, name: str) -> str:
    feature = drift.features[name]
    return f"{name} {feature.method} {feature.statistics[feature.method]:.3g}"


def _quiet(policy: RetrainingPolicy, drift: DriftResult | None, live: LiveError | None,
           metric: str) -> str:
    parts = [f"{len(drift.drifted_features)} drifted feature(s) "
             f"({', '.join(drift.drifted_features) or 'none'})" if drift else "no drift window"]
    if live is not None and live.overall.rows:
        parts.append(f"live {metric} {getattr(live.overall, metric):.4g} vs test "
                     f"{getattr(live.test, metric):.4g}")
    else:
        parts.append("no rows with feedback")
    return ", ".join(parts)
