"""Shadow and canary traffic on the proxy's /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from serving.metric_children import Children

# What a background pricing (a shadow price, or the champion's price of a canary request) came to.
BACKGROUND_OUTCOMES = ("ok", "failed", "busy", "no_challenger", "invalid_rows")


class TrafficMetrics:
    """Made once per app (its lifespan may run more than once under tests)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fraction = Gauge(
            "valuation_traffic_fraction",
            "Share of /predict requests shadowed or canaried by the challenger (the split in "
            "force on this proxy)", ["kind"], registry=registry)
        self.requests = Counter(
            "valuation_served_alias_requests",
            "/predict requests by who priced them: the alias that answered (champion, canary, "
            "challenger, explicit, fallback) or shadow (priced in the background)",
            ["served_alias"], registry=registry)
        self.background = Counter(
            "valuation_traffic_background_pricings",
            "Background pricings (shadow prices; the champion's price of a canary request), by "
            "outcome", ["purpose", "outcome"], registry=registry)
        self.canary_fallbacks = Counter(
            "valuation_canary_fallbacks",
            "Canary requests the challenger could not answer, answered by the champion instead, "
            "by the challenger's status code", ["status"], registry=registry)
        self.setting_errors = Counter(
            "valuation_traffic_setting_errors",
            "Failed reads of the run-time traffic setting (the last split read stays in force)",
            registry=registry)
        self.requests_by_alias = Children(self.requests)  # counted on every /predict
        for kind in ("shadow", "canary"):
            self.fraction.labels(kind).set(0)
        for alias in ("champion", "canary", "shadow"):
            self.requests.labels(alias)  # exported at 0 from the start
