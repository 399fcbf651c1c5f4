"""The drift demo's client of a running stack: price a stream's rows through /predict, send their
observed prices to /feedback, and run the monitoring job on demand (POST /monitoring/run; the
stack's worker runs it, its summary read back from RQ and its statistics from its MLflow run).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd

from bench.common import BenchError, feature_records
from bench.drift_scenario import OBSERVED
from valuation.model_runtime.schema import EXAMPLE_ROW

JOB_TIMEOUT_S = 1800  # a monitoring run queued behind a retraining waits for it (one worker)


@dataclass
class Priced:
    """One chunk of the stream as the service answered it."""

    request_ids: list[str] = field(default_factory=list)  # per row
    row_indexes: list[int] = field(default_factory=list)
    prices: list[float] = field(default_factory=list)
    version: str | None = None


class StackClient:
    def __init__(self, proxy_url: str, api_key: str, model_name: str, redis: Any,
                 tracking_uri: str, rows_per_request: int, concurrency: int = 4) -> None:
        self.url, self.model_name = proxy_url, model_name
        self.http = httpx.Client(base_url=proxy_url, headers={"X-API-Key": api_key},
                                 timeout=120.0, trust_env=False)
        self.redis, self.tracking_uri = redis, tracking_uri
        self.rows_per_request, self.concurrency = rows_per_request, concurrency

    def close(self) -> None:
        self.http.close()

    def price(self, chunk: pd.DataFrame) -> Priced:
        """Every row of `chunk`, `rows_per_request` rows a request, `concurrency` at a time."""
        records = feature_records(chunk)
        starts = range(0, len(records), self.rows_per_request)
        with ThreadPoolExecutor(self.concurrency) as pool:
            answers = list(pool.map(lambda s: self._predict(records[s:s + self.rows_per_request]),
                                    starts))
        priced = Priced()
        for answer in answers:
            count = len(answer["predictions"])
            priced.request_ids += [answer["request_id"]] * count
            priced.row_indexes += list(range(count))
            priced.prices += [float(p) for p in answer["predictions"]]
            priced.version = str(answer["model_version"])
        return priced

    def _predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        answer = self.http.post("/predict", json={"model_name": self.model_name, "features": rows})
        if answer.status_code != 200:
            raise BenchError(f"/predict answered {answer.status_code}: {answer.text[:300]}")
        return answer.json()

    def feedback(self, chunk: pd.DataFrame, priced: Priced, labelled: np.ndarray) -> int:
        """Observed prices of the `labelled` rows, named by request id and row index; each
        observed at its own microsecond, so two draws of one row are two observations."""
        now = datetime.now(UTC)
        observations = [
            {"request_id": priced.request_ids[i], "row_index": priced.row_indexes[i],
             "observed_price": float(chunk[OBSERVED].iloc[i]), "kind": "sale",
             "observed_at": (now + timedelta(microseconds=int(i))).isoformat()}
            for i in np.flatnonzero(labelled)]
        answer = self.http.post("/feedback", json={"observations": observations})
        if answer.status_code != 200:
            raise BenchError(f"/feedback answered {answer.status_code}: {answer.text[:300]}")
        return int(answer.json()["recorded"])

    def monitor(self) -> dict[str, Any]:
        """One monitoring run now, on the stack's worker: its summary and its run's metrics."""
        from mlflow import MlflowClient

        accepted = self.http.post("/monitoring/run")
        if accepted.status_code != 202:
            raise BenchError(f"/monitoring/run answered {accepted.status_code}: {accepted.text[:300]}")
        summary = self._result(accepted.json()["job_id"])
        metrics = {}
        if summary.get("run_id"):
            metrics = MlflowClient(self.tracking_uri).get_run(summary["run_id"]).data.metrics
        return {**summary, "metrics": dict(metrics)}

    def _result(self, job_id: str) -> dict[str, Any]:
        from rq.job import Job

        from serving.jobs.queue import SERIALIZER

        job = Job.fetch(job_id, connection=self.redis, serializer=SERIALIZER)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            status = job.get_status(refresh=True)
            if status == "finished":
                return job.return_value() or {}
            if status in ("failed", "stopped", "canceled"):
                raise BenchError(f"monitoring job {job_id} {status}: "
                                 f"{(job.latest_result().exc_string or '')[-1500:]}")
            time.sleep(0.5)
        raise BenchError(f"monitoring job {job_id} did not end within {JOB_TIMEOUT_S} s")

    def training(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        """Wait for a training job (GET /job_status) and return its last status."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.http.get(f"/job_status/{job_id}")
            status = answer.json() if answer.status_code == 200 else {"status": answer.text}
            if status.get("status") in ("finished", "failed", "stopped", "canceled") or \
                    time.monotonic() > deadline:
                return status
            time.sleep(2.0)

    def models(self) -> dict[str, Any]:
        answer = self.http.get("/models")
        if answer.status_code != 200:
            raise BenchError(f"/models answered {answer.status_code}: {answer.text[:300]}")
        return answer.json()

    def served_version(self) -> str | None:
        """The version a default /predict is answered by now (the champion's, no canary)."""
        probe = self.http.post("/predict", json={"model_name": self.model_name,
                                                 "features": [EXAMPLE_ROW]})
        return str(probe.json()["model_version"]) if probe.status_code == 200 else None

    def shadow_pricings(self) -> dict[str, float]:
        """The proxy's counts of background (shadow) pricings, by outcome."""
        counts: dict[str, float] = {}
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith("valuation_traffic_background_pricings_total{") and \
                    'purpose="shadow"' in line:
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                counts[outcome] = counts.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
        return counts

    def drifted_metric_lines(self) -> list[str]:
        """The /metrics lines the ValuationFeatureDrift alert reads that say 'drifted'."""
        text = self.http.get("/metrics").text
        return [line for line in text.splitlines()
                if line.startswith("valuation_feature_drifted{") and line.endswith(" 1.0")]


def medape(predicted: np.ndarray, observed: np.ndarray) -> float | None:
    if not len(observed):
        return None
    return float(np.median(np.abs(predicted - observed) / observed))
