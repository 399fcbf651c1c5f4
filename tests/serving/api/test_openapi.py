"""/docs and /openapi.json: the API-key scheme (Swagger's Authorize) and the spec's bodies as
examples of every endpoint."""

from __future__ import annotations

import pytest

from serving.api.schemas import (
    SPEC_BEST_MODEL_BODY,
    SPEC_PREDICT_BODY,
    SPEC_TRAIN_BODY,
    BestModelRequest,
    PredictRequest,
    TrainRequest,
)

PROTECTED = {("/predict", "post"), ("/train", "post"), ("/job_status/{job_id}", "get"),
             ("/best_model", "post"), ("/models", "get"), ("/model_rules", "get"),
             ("/jobs", "get"), ("/monitoring/run", "post"), ("/monitoring/latest", "get"),
             ("/feedback", "post")}
# The web pages need no key to load: the person types it in the page.
PAGES = {("/ui", "get"), ("/ui/ops", "get")}
OPEN = {("/health", "get"), ("/ready", "get"), ("/metrics", "get"), *PAGES}
# The Open Inference Protocol (serving/api/inference_v2.py): its errors are `{"error": "..."}`.
V2_PROTECTED = {(f"/v2/models/{{model_name}}{version}{leaf}", method)
                for version in ("", "/versions/{model_version}")
                for leaf, method in (("", "get"), ("/ready", "get"), ("/infer", "post"))}
V2_OPEN = {("/v2/health/live", "get"), ("/v2/health/ready", "get")}
PROTECTED |= V2_PROTECTED
OPEN |= V2_OPEN


@pytest.fixture
def spec(client) -> dict:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def _schema(spec: dict, ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else ref_or_schema


def test_the_api_key_header_scheme_is_declared(spec) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                  "description": schemes["ApiKey"]["description"]}}


def test_protected_operations_require_the_key_and_probes_do_not(spec) -> None:
    operations = {(path, method): op for path, item in spec["paths"].items()
                  for method, op in item.items()}
    assert set(operations) == PROTECTED | OPEN
    for key in PROTECTED:
        assert operations[key]["security"] == [{"ApiKey": []}], key
        assert "401" in operations[key]["responses"], key
    for key in OPEN:
        assert "security" not in operations[key], key


def test_every_request_body_shows_the_spec_example(spec) -> None:
    expected = {"/predict": SPEC_PREDICT_BODY, "/train": SPEC_TRAIN_BODY,
                "/best_model": SPEC_BEST_MODEL_BODY}
    for path, body in expected.items():
        content = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        schema = _schema(spec, content["schema"])
        assert schema["examples"][0] == body, path


def test_every_operation_documents_an_example_answer(spec) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if path == "/metrics" or (path, method) in PAGES:
                continue  # Prometheus text format; HTML
            success = next(code for code in operation["responses"] if code.startswith("2"))
            content = operation["responses"][success]["content"]["application/json"]
            schema = _schema(spec, content["schema"])
            assert schema.get("examples"), f"{method.upper()} {path} has no example answer"


def test_job_id_parameter_has_an_example(spec) -> None:
    parameter = spec["paths"]["/job_status/{job_id}"]["get"]["parameters"][0]
    assert parameter["name"] == "job_id" and parameter["examples"]


def test_the_spec_bodies_are_valid_requests() -> None:
    assert PredictRequest.model_validate(SPEC_PREDICT_BODY).model_name == "property_friends_best_model"
    assert TrainRequest.model_validate(SPEC_TRAIN_BODY).pipeline_config.params["n_estimators"] == 150
    assert BestModelRequest.model_validate(SPEC_BEST_MODEL_BODY).experiment_config.metric == "mse"


def test_swagger_ui_is_served(client) -> None:
    answer = client.get("/docs")
    assert answer.status_code == 200
    assert "swagger-ui" in answer.text and "/openapi.json" in answer.text
    assert client.get("/redoc").status_code == 200


def test_every_422_is_documented_with_the_one_field_error_shape(spec) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's other shape
    shape = spec["components"]["schemas"]["ValidationErrorResponse"]
    item = _schema(spec, shape["properties"]["detail"]["items"])
    assert set(item["properties"]) == {"row", "field", "message"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            takes_input = operation.get("parameters") or operation.get("requestBody")
            if not takes_input:
                continue
            documented = operation["responses"].get("422")
            assert documented, f"{method.upper()} {path} does not document its 422"
            schema = documented["content"]["application/json"]["schema"]
            shape = "OipError" if path.startswith("/v2/") else "ValidationErrorResponse"
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, path
