"""The model-server supervisor against real `mlflow models serve` processes and a real registry."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from serving.model_servers.process import kill_leftover_model_servers
from serving.model_servers.registry import example_payload
from serving.model_servers.supervisor import ModelServerSupervisor
from serving.ports import free_port
from serving.processes import kill_group
from tests.support.stack import (
    MODEL_NAME,
    TrainedRegistry,
    set_champion,
    supervisor_settings,
)
from valuation.config import load_config
from valuation.model_runtime.schema import EXAMPLE_ROW
from valuation.model_runtime.validation import ValidationRules

PAYLOAD = {"inputs": [EXAMPLE_ROW]}
SWITCH_DEADLINE_S = 60.0  # the contract: a moved champion is served within a minute
START_DEADLINE_S = 180.0


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
             interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


def predict_through(supervisor: ModelServerSupervisor, client: httpx.Client) -> tuple[str, float]:
    """What the proxy does: take the served champion, forward one request to it."""
    with supervisor.use() as served:
        if served is None:
            raise RuntimeError("no model served (the proxy would answer 503)")
        response = client.post(f"{served.base_url}/invocations", json=PAYLOAD, timeout=10)
        response.raise_for_status()
        return served.version, float(response.json()["predictions"][0])


def serving(supervisor: ModelServerSupervisor, version: str) -> Callable[[], bool]:
    def check() -> bool:
        current = supervisor.current()
        return current is not None and current.version == version
    return check


def broken_copy(registry: TrainedRegistry, version: str, target: Path) -> str:
    """A new version of the model whose MLmodel and metadata are intact but whose model files
    are gone: it reads fine from the registry and fails only when a server loads it."""
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    source = client.get_model_version(MODEL_NAME, version).source
    logged = client.get_logged_model(source.removeprefix("models:/"))
    artifacts = Path(logged.artifact_location.removeprefix("file://"))
    shutil.copytree(artifacts, target)
    keep = {"MLmodel", "input_example.json", "serving_input_example.json"}
    for entry in target.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return str(client.create_model_version(MODEL_NAME, source=str(target)).version)


# ---- fast checks (no model server) ---------------------------------------------------------


def test_example_row_built_from_rules_passes_the_rules():
    rules = ValidationRules.from_config(load_config([]).validation, ["nunoa", "vitacura"])
    row = example_payload(rules)["inputs"][0]
    assert rules.row_errors(row, 0) == []


def test_leftover_cleanup_only_kills_model_servers(tmp_path: Path):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "model-server-1.pid").write_text(str(bystander.pid))
        (tmp_path / "model-server-2.pid").write_text("not a pid")
        assert kill_leftover_model_servers(tmp_path) == []
        assert bystander.poll() is None  # a process that is not a model server is left alone
        assert list(tmp_path.glob("*.pid")) == []
    finally:
        bystander.kill()
        bystander.wait()


def test_no_champion_is_reported_and_nothing_is_served(trained_registry, tmp_path: Path):
    settings = supervisor_settings(tmp_path, free_port())
    settings.registry.champion_alias = "nobody-has-this-alias"
    supervisor = ModelServerSupervisor(settings, trained_registry.tracking_uri)
    supervisor.start()
    try:
        wait_for(lambda: supervisor.status()["state"] != "starting", 60, "the first registry read")
        status = supervisor.status()
        assert status["state"] == "no_champion", status
        assert "nobody-has-this-alias" in status["detail"]
        assert supervisor.current() is None
        assert status["servers"] == []
    finally:
        supervisor.stop()


def test_unreachable_registry_is_down_not_no_champion(tmp_path: Path):
    # Nothing listens on this port: the registry is out, which must not read as "no champion".
    settings = supervisor_settings(tmp_path, free_port(), registry_timeout_s=2)
    supervisor = ModelServerSupervisor(settings, f"http://127.0.0.1:{free_port()}")
    supervisor.start()
    try:
        wait_for(lambda: supervisor.status()["state"] != "starting", 60, "the first registry read")
        status = supervisor.status()
        assert status["state"] == "down", status
        assert "cannot read alias 'champion'" in status["detail"]
        assert supervisor.current() is None
    finally:
        supervisor.stop()


# ---- real model servers --------------------------------------------------------------------


@pytest.mark.slow
def test_champion_move_switches_with_zero_failed_requests(trained_registry, supervisor_factory):
    old, new = trained_registry.versions
    set_champion(trained_registry.tracking_uri, old)
    supervisor = supervisor_factory(trained_registry.tracking_uri, free_port())
    supervisor.start()
    wait_for(serving(supervisor, old), START_DEADLINE_S, f"version {old} served")

    served = supervisor.current()
    assert served is not None and served.name == MODEL_NAME
    assert isinstance(served.rules, ValidationRules) and served.rules.sectors
    assert "validation_rules" in served.metadata
    status = supervisor.status()
    assert status["state"] == "serving" and status["version"] == old
    old_url = served.base_url

    answers: list[tuple[str, float]] = []
    failures: list[str] = []
    stop = threading.Event()

    def steady_stream() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                try:
                    answers.append(predict_through(supervisor, client))
                except Exception as error:  # every kind of failure counts
                    failures.append(repr(error))
                time.sleep(0.01)

    pump = threading.Thread(target=steady_stream, daemon=True)
    pump.start()
    try:
        wait_for(lambda: len(answers) >= 5, 30, "the stream to flow through the old version")
        set_champion(trained_registry.tracking_uri, new)
        wait_for(serving(supervisor, new), SWITCH_DEADLINE_S, f"the switch to version {new}")
        # Keep streaming until the old server has been drained and stopped.
        wait_for(lambda: [s["version"] for s in supervisor.status()["servers"]] == [new],
                 30, "the old server to be drained and stopped")
        count_after_switch = len(answers)
        wait_for(lambda: len(answers) >= count_after_switch + 5, 30, "requests after the drain")
    finally:
        stop.set()
        pump.join(30)

    assert failures == [], failures[:5]
    versions_seen = [version for version, _ in answers]
    assert versions_seen[0] == old and versions_seen[-1] == new
    assert all(price > 0 for _, price in answers)
    with pytest.raises(httpx.HTTPError):  # the old server is really gone
        httpx.get(f"{old_url}/ping", timeout=2)


@pytest.mark.slow
def test_the_model_server_answers_bad_rows_with_400_naming_row_and_field(trained_registry,
                                                                        supervisor_factory):
    # What a client calling `mlflow models serve` directly (not through the proxy) is told.
    version = trained_registry.versions[0]
    set_champion(trained_registry.tracking_uri, version)
    supervisor = supervisor_factory(trained_registry.tracking_uri, free_port())
    supervisor.start()
    wait_for(serving(supervisor, version), START_DEADLINE_S, f"version {version} served")
    served = supervisor.current()
    no_latitude = {k: v for k, v in EXAMPLE_ROW.items() if k != "latitude"}
    rows = [EXAMPLE_ROW, {**EXAMPLE_ROW, "sector": "atlantis"}, no_latitude]
    with httpx.Client() as client:
        answer = client.post(f"{served.base_url}/invocations", json={"inputs": rows}, timeout=30)
        split = client.post(f"{served.base_url}/invocations", timeout=30, json={
            "dataframe_split": {"columns": list(EXAMPLE_ROW), "data": [list(EXAMPLE_ROW.values())]}})
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert "row 1, field 'sector'" in message and "atlantis" in message
    assert "row 2, field 'latitude': is required" in message
    # The type-hinted model takes rows only; a DataFrame body is refused, not misread.
    assert split.status_code == 400 and "'inputs'" in split.json()["message"]


@pytest.mark.slow
def test_dead_model_server_is_down_then_restarted(trained_registry, supervisor_factory):
    version = trained_registry.versions[0]
    set_champion(trained_registry.tracking_uri, version)
    # A restart backoff of a few seconds keeps the "down" window wide enough to observe.
    supervisor = supervisor_factory(trained_registry.tracking_uri, free_port(),
                                    retry_backoff_s=3)
    supervisor.start()
    wait_for(serving(supervisor, version), START_DEADLINE_S, f"version {version} served")
    [server] = supervisor.status()["servers"]

    kill_group(server["pid"])  # the model server dies, uvicorn child and all

    states: list[str] = []

    def down_observed() -> bool:
        status = supervisor.status()
        states.append(status["state"])
        return status["state"] == "down" and supervisor.current() is None

    wait_for(down_observed, 30, "status down after the kill", interval_s=0.05)
    assert "exited" in supervisor.status()["detail"]
    with pytest.raises(RuntimeError, match="no model served"), httpx.Client() as client:
        predict_through(supervisor, client)

    wait_for(serving(supervisor, version), START_DEADLINE_S, "the automatic restart")
    [restarted] = supervisor.status()["servers"]
    assert restarted["pid"] != server["pid"]
    with httpx.Client() as client:
        assert predict_through(supervisor, client)[0] == version


@pytest.mark.slow
def test_broken_versions_are_never_switched_to(trained_registry, supervisor_factory,
                                               tmp_path: Path):
    good = trained_registry.versions[0]
    set_champion(trained_registry.tracking_uri, good)
    supervisor = supervisor_factory(trained_registry.tracking_uri, free_port())
    supervisor.start()
    wait_for(serving(supervisor, good), START_DEADLINE_S, f"version {good} served")

    client = MlflowClient(tracking_uri=trained_registry.tracking_uri,
                          registry_uri=trained_registry.tracking_uri)
    unloadable = broken_copy(trained_registry, good, tmp_path / "broken-model")
    unreadable = str(client.create_model_version(
        MODEL_NAME, source=str(tmp_path / "no-such-model")).version)
    served_versions: list[str | None] = []
    try:
        for bad, reason in ((unloadable, "exited with code"), (unreadable, "cannot read")):
            set_champion(trained_registry.tracking_uri, bad)

            def failure_reported(bad=bad, reason=reason) -> bool:
                current = supervisor.current()
                served_versions.append(current.version if current else None)
                detail = supervisor.status()["detail"]
                return f"version {bad} failed" in detail and reason in detail

            wait_for(failure_reported, START_DEADLINE_S, f"version {bad} to be refused")
            status = supervisor.status()
            assert status["state"] == "serving" and status["version"] == good, status
            with httpx.Client() as http:
                assert predict_through(supervisor, http)[0] == good
    finally:
        set_champion(trained_registry.tracking_uri, good)
    # The old version answered throughout: never None, never a broken version.
    assert set(served_versions) == {good}
