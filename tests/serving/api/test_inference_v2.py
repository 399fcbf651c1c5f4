"""The Open Inference Protocol (V2) endpoints, driven by a client no one here wrote: Triton's
`tritonclient[http]` from PyPI, against the real app behind uvicorn and a real model server."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from serving.app import create_app
from tests.serving.prediction.support import metric, synthetic_rows, unbatched_prices
from tests.support.serving import MODEL_NAME, serve_app, serving_settings
from valuation.model_runtime.schema import CATEGORICAL_FEATURES, FEATURES

pytestmark = pytest.mark.slow


@pytest.fixture
def v2(tmp_path, redis_conn, key_store, api_key, trained_model, serving_supervisor):
    settings = serving_settings(tmp_path, trained_model.tracking_uri)
    app = create_app(supervisor=serving_supervisor, key_store=key_store, redis=redis_conn,
                     settings=settings)
    with serve_app(app) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"), concurrency=8)
        yield client, url, {"X-API-Key": api_key}, Path(settings.audit.path)
        client.close()


def pandas_inputs(rows: list[dict]) -> list[triton.InferInput]:
    """One input per feature column, as KServe/MLServer's pandas codec lays out a DataFrame."""
    inputs = []
    for name in FEATURES:
        categorical = name in CATEGORICAL_FEATURES
        column = np.array([row[name] for row in rows], dtype=object if categorical else np.float64)
        tensor = triton.InferInput(name, [len(rows)], "BYTES" if categorical else "FP64")
        tensor.set_data_from_numpy(column, binary_data=False)
        inputs.append(tensor)
    return inputs


PRICE = [triton.InferRequestedOutput("price", binary_data=False)]
PANDAS = {"content_type": "pd"}


def test_health_metadata_and_readiness(v2, trained_model) -> None:
    client, _, headers, _ = v2
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL_NAME, headers=headers)
    assert client.is_model_ready(MODEL_NAME, trained_model.version, headers=headers)
    assert not client.is_model_ready(MODEL_NAME, "999", headers=headers)
    meta = client.get_model_metadata(MODEL_NAME, headers=headers)
    assert meta["versions"] == [trained_model.version]
    assert [tensor["name"] for tensor in meta["inputs"]] == list(FEATURES)
    assert meta["outputs"] == [{"name": "price", "datatype": "FP64", "shape": [-1]}]


def test_pandas_columns_are_priced_like_predict(v2, trained_model, serving_supervisor) -> None:
    client, url, headers, audit_path = v2
    rows = synthetic_rows(5, seed=31)
    answer = client.infer(MODEL_NAME, pandas_inputs(rows), outputs=PRICE, parameters=PANDAS,
                          headers=headers, request_id="listing-batch-7")
    prices = answer.as_numpy("price")
    assert prices.dtype == np.float64
    reference = unbatched_prices(serving_supervisor.current().base_url, rows)
    assert prices.tolist() == pytest.approx(reference, rel=1e-9)
    response = answer.get_response()
    assert response["model_version"] == trained_model.version
    assert response["id"] == "listing-batch-7"
    # /predict prices the same rows the same way.
    predicted = httpx.post(f"{url}/predict", headers=headers, trust_env=False,
                           json={"model_name": MODEL_NAME, "features": rows}).json()
    assert predicted["predictions"] == pytest.approx(prices.tolist(), rel=1e-12)
    # Audited like /predict: one line with the rows and prices.
    lines = [json.loads(line) for line in audit_path.read_text().splitlines()]
    audited = [line for line in lines if line["action"] == "predict"][0]
    assert audited["inputs"] == rows and audited["outputs"] == pytest.approx(prices.tolist())
    assert audited["model_version"] == trained_model.version


def test_a_version_is_served_by_that_version_only(v2, trained_model) -> None:
    client, _, headers, _ = v2
    rows = synthetic_rows(2, seed=32)
    pinned = client.infer(MODEL_NAME, pandas_inputs(rows), model_version=trained_model.version,
                          outputs=PRICE, parameters=PANDAS, headers=headers)
    assert pinned.get_response()["model_version"] == trained_model.version
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL_NAME, pandas_inputs(rows), model_version="999", outputs=PRICE,
                     parameters=PANDAS, headers=headers)
    assert refused.value.status() == "404"
    assert "version 999 is not being served" in refused.value.message()


def test_a_bad_row_is_422_naming_row_and_input(v2) -> None:
    client, _, headers, _ = v2
    rows = synthetic_rows(3, seed=33)
    rows[1]["sector"] = "atlantis"
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL_NAME, pandas_inputs(rows), outputs=PRICE, parameters=PANDAS,
                     headers=headers)
    assert refused.value.status() == "422"
    assert "row 1, input 'sector'" in refused.value.message()
    assert "atlantis" in refused.value.message()


def test_inputs_that_are_not_the_columns_are_422(v2) -> None:
    _, url, headers, _ = v2
    rows = synthetic_rows(2, seed=34)
    body = {"parameters": PANDAS, "inputs": [
        {"name": name, "shape": [2], "datatype": "BYTES" if name in CATEGORICAL_FEATURES else "FP64",
         "data": [row[name] for row in rows]} for name in FEATURES if name != "net_area"]}
    missing = httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=body, headers=headers,
                         trust_env=False)
    assert missing.status_code == 422
    assert missing.json() == {"error": "missing input(s) net_area: give one input per feature column"}
    body["inputs"][0]["shape"] = [3]
    uneven = httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=body, headers=headers,
                        trust_env=False)
    assert uneven.status_code == 422 and "input 'type' has 2 values" in uneven.json()["error"]


def test_keys_and_binary_tensors_are_refused_in_the_protocols_error_body(v2) -> None:
    client, url, headers, _ = v2
    rows = synthetic_rows(1, seed=35)
    with pytest.raises(InferenceServerException) as no_key:
        client.infer(MODEL_NAME, pandas_inputs(rows), outputs=PRICE, parameters=PANDAS)
    assert no_key.value.status() == "401" and "missing API key" in no_key.value.message()
    unknown = httpx.get(f"{url}/v2/models/other_model", headers=headers, trust_env=False)
    assert unknown.status_code == 404 and "unknown model 'other_model'" in unknown.json()["error"]
    binary = [triton.InferInput("type", [1], "BYTES")]
    binary[0].set_data_from_numpy(np.array(["casa"], dtype=object), binary_data=True)
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL_NAME, binary, outputs=PRICE, headers=headers)
    assert refused.value.status() == "400" and "binary tensor extension" in refused.value.message()


def test_concurrent_infer_requests_are_batched(v2, serving_supervisor) -> None:
    client, url, headers, _ = v2
    rows = synthetic_rows(24, seed=36)
    reference = unbatched_prices(serving_supervisor.current().base_url, rows)
    [server] = [s for s in serving_supervisor.status()["servers"] if s.get("phase") == "ready"]
    # The model server is frozen while the requests go out: the first call is held in flight, so
    # the ones that arrive meanwhile must gather into batches, however loaded the machine is.
    os.killpg(server["pid"], signal.SIGSTOP)
    try:
        pending = [client.async_infer(MODEL_NAME, pandas_inputs([row]), outputs=PRICE,
                                      parameters=PANDAS, headers=headers) for row in rows]
        time.sleep(2.0)
    finally:
        os.killpg(server["pid"], signal.SIGCONT)
    prices = [request.get_result().as_numpy("price").tolist()[0] for request in pending]
    assert prices == pytest.approx(reference, rel=1e-9)
    assert metric(url, "valuation_batch_requests_sum") == len(rows)
    assert metric(url, "valuation_batch_requests_count") < len(rows)


def _infer_body(rows: list[dict]) -> dict:
    return {"parameters": PANDAS, "inputs": [
        {"name": name, "shape": [len(rows)],
         "datatype": "BYTES" if name in CATEGORICAL_FEATURES else "FP64",
         "data": [row[name] for row in rows]} for name in FEATURES]}


def test_infer_rows_go_to_the_prediction_store_like_predict(v2, trained_model, tmp_path) -> None:
    from serving.prediction_store.engine import open_engine
    from serving.prediction_store.queries import labelled_rows, predictions_window

    _, url, headers, _ = v2
    rows = synthetic_rows(3, seed=33)
    default = httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=_infer_body(rows),
                         headers=headers, trust_env=False)
    pinned = httpx.post(f"{url}/v2/models/{MODEL_NAME}/versions/{trained_model.version}/infer",
                        json=_infer_body(rows[:1]), headers=headers, trust_env=False)
    assert default.status_code == pinned.status_code == 200, default.text + pinned.text
    request_id = default.headers["X-Request-ID"]
    # Feedback naming the infer request's row: /feedback waits for this proxy's buffered rows,
    # so the match proves the row was stored under the response's request id.
    observed = {"request_id": request_id, "row_index": 2, "observed_price": 12345.0,
                "observed_at": "2026-01-15T00:00:00Z", "kind": "sale"}
    fed = httpx.post(f"{url}/feedback", json={"observations": [observed]}, headers=headers,
                     trust_env=False)
    assert fed.status_code == 200, fed.text
    assert fed.json()["observations"][0]["prediction_id"] is not None

    engine = open_engine(str(serving_settings(tmp_path, trained_model.tracking_uri)
                             .prediction_store.url))
    stored = predictions_window(engine)
    by_request = stored[stored.request_id == request_id].sort_values("row_index")
    assert list(by_request.row_index) == [0, 1, 2]
    assert by_request.price.tolist() == pytest.approx(
        default.json()["outputs"][0]["data"], rel=1e-12)
    assert set(by_request.served_alias) == {"champion"}
    assert set(by_request.model_version) == {trained_model.version}
    explicit = stored[stored.request_id == pinned.headers["X-Request-ID"]]
    assert list(explicit.served_alias) == ["explicit"]
    [line] = labelled_rows(engine).to_dict("records")
    assert (line["request_id"], line["row_index"], line["observed_price"]) == (request_id, 2,
                                                                                12345.0)
