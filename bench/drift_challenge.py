"""The drift demo's second act (bench/drift_demo.py): the challenger the retraining registered is
shadowed on live traffic, judged by the promotion gate on the rows that got feedback, promoted by
the operator's command, and then serves.

What an operator would type is what runs: `valuation traffic set --shadow 1`, `valuation promote
--challenger` and `valuation traffic reset`, as subprocesses pointed at the demo's stack (its
tracking store, prediction store and traffic key). The gate's figures are also read in-process
(serving/monitoring/gate.py, the same function the command calls), before the command acts, so
the report quotes them whatever the command prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchError, progress

SERVED_TIMEOUT_S = 600  # a model server of the challenger started on a busy machine
CLI_TIMEOUT_S = 300


@dataclass(frozen=True)
class StackOperator:
    """Runs the `valuation` CLI against the demo's stack."""

    tracking_uri: str
    store_url: str
    traffic_key: str
    audit_path: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri,
                "PREDICTION_STORE_URL": self.store_url, "TRAFFIC_REDIS_KEY": self.traffic_key,
                "AUDIT_LOG_PATH": str(self.audit_path)}

    def valuation(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "valuation"), *arguments]
        progress(f"operator: valuation {' '.join(arguments)}")
        return subprocess.run(command, env=self.env(), capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S, check=False)

    def must(self, *arguments: str) -> str:
        done = self.valuation(*arguments)
        if done.returncode != 0:
            raise BenchError(f"valuation {' '.join(arguments)} exited {done.returncode}: "
                             f"{(done.stderr or done.stdout)[-800:]}")
        return done.stdout

    def gate_figures(self, model_name: str) -> dict[str, Any]:
        """The promotion gate's judgement now (what `promote --challenger` will find)."""
        from mlflow import MlflowClient
        from omegaconf import OmegaConf

        from serving.monitoring.gate import evaluate_gate
        from serving.prediction_store.engine import open_engine
        from valuation.config import load_config

        settings = OmegaConf.merge(load_config(config_name="serving"),
                                   {"registry": {"model_name": model_name}})
        engine = open_engine(self.store_url)
        try:
            return evaluate_gate(settings, MlflowClient(self.tracking_uri), engine).to_dict()
        finally:
            engine.dispose()


def challenge(operator: StackOperator, client: Any, phase: Callable[[str, Any], None],
              served: Callable[[], int], streams: dict[str, Any], challenger: str,
              model_name: str) -> dict[str, Any]:
    """Shadow the challenger on `streams["shadow"]`, gate, promote, then serve
    `streams["promoted"]` with the new champion. `phase(name, frame)` replays a stream."""
    outcome: dict[str, Any] = {"challenger": challenger}
    operator.must("traffic", "set", "--shadow", "1")
    waited = _wait(lambda: client.models()["traffic"].get("challenger_served_version") == challenger,
                   f"the challenger (version {challenger}) to be served for shadow traffic")
    outcome["shadow_served_after_s"] = waited
    outcome["shadow_start"] = served()
    phase("shadow", streams["shadow"])
    outcome["shadow_priced"] = client.shadow_pricings()
    outcome["gate"] = operator.gate_figures(model_name)
    promoted = operator.valuation("promote", "--challenger")
    outcome["promote_exit"] = promoted.returncode
    outcome["promote_output"] = (promoted.stdout + promoted.stderr).strip().splitlines()[-8:]
    operator.must("traffic", "reset")
    if promoted.returncode != 0:
        progress(f"the gate refused: {outcome['gate'].get('reason')}")
        return outcome
    outcome["promoted_served_after_s"] = _wait(
        lambda: client.served_version() == challenger,
        f"the proxy to answer with the promoted champion (version {challenger})")
    outcome["promoted_start"] = served()
    phase("promoted", streams["promoted"])
    return outcome


def _wait(done: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > SERVED_TIMEOUT_S:
            raise BenchError(f"gave up after {SERVED_TIMEOUT_S} s waiting for {what}")
        time.sleep(1.0)
    return round(time.monotonic() - started, 1)
