"""Request and response bodies of the proxy. The examples are the specification's own bodies, so
/docs shows exactly what existing clients send."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from valuation.model_runtime.schema import EXAMPLE_ROW

# --- the specification's Usage bodies (the API contract; they must keep working verbatim) ------

SPEC_PREDICT_BODY: dict[str, Any] = {
    "model_name": "property_friends_best_model",
    "features": [dict(EXAMPLE_ROW)],
}

SPEC_TRAIN_BODY: dict[str, Any] = {
    "experiment_config": {"experiment_name": "Property-Friends-Experiment"},
    "data_config": {
        "categorical_columns": ["type", "sector"],
        "train_cols": [
            "type",
            "sector",
            "net_usable_area",
            "net_area",
            "n_rooms",
            "n_bathroom",
            "latitude",
            "longitude",
        ],
        "target": "price",
    },
    "db_config": {"db_type": "csv", "db_config": {}},
    "pipeline_config": {
        "model_module": "sklearn.ensemble",
        "model": "GradientBoostingRegressor",
        "params": {
            "learning_rate": 0.05,
            "n_estimators": 150,
            "max_depth": 6,
            "loss": "absolute_error",
        },
    },
}

SPEC_BEST_MODEL_BODY: dict[str, Any] = {
    "experiment_config": {
        "experiment_name": "Property-Friends-Experiment",
        "metric": "mse",
        "metric_goal": "min",
    }
}

# Metrics /best_model can rank by; each maps to `metrics.test_<name>` on evaluation runs.
RankingMetric = Literal["rmse", "mse", "mae", "mape", "r2", "medape"]

# Keys of db_config.db_config a request may set, per source, with the type each must have.
# They become `data.<key>=<value>` Hydra overrides of the matching conf/data/ group.
DB_CONFIG_KEYS: dict[str, dict[str, type]] = {
    "csv": {"train_path": str, "test_path": str},
    "postgres": {"train_table": str, "test_table": str, "train_query": str, "test_query": str},
    "sample": {"n_train": int, "n_test": int, "seed": int},
}


class _Strict(BaseModel):
    # A misspelt field must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


# --- errors ------------------------------------------------------------------------------------


_REQUEST_ID_EXAMPLE = "4f3c2a9e0b1d4e7f8a6b5c4d3e2f1a0b"


class _ErrorBody(BaseModel):
    request_id: str | None = Field(None, description="Quote it when reporting a problem")


class ErrorResponse(_ErrorBody):
    detail: str = Field(description="What was wrong, and what to do about it")

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"detail": "invalid API key", "request_id": _REQUEST_ID_EXAMPLE}]})


class FieldErrorDetail(BaseModel):
    row: int | None = Field(description="Index of the row in `features` (null: not about one row)")
    field: str | None = Field(
        description="The offending field, as a dotted path into the body or a parameter name "
        "(null: the whole row or body)"
    )
    message: str


class ValidationErrorResponse(_ErrorBody):
    """Every 422: the request's values were refused, each problem named by row and field."""

    detail: list[FieldErrorDetail]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": [
            {"row": 0, "field": "sector", "message": "unknown sector 'atlantis'"},
            {"row": None, "field": "experiment_config.metric",
             "message": "Input should be 'rmse', 'mse', 'mae', 'mape', 'r2' or 'medape'"},
        ],
        "request_id": _REQUEST_ID_EXAMPLE,
    }]})


# --- /health, /ready ---------------------------------------------------------------------------


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    failed: list[str] = Field(default_factory=list, description="Dependencies that are not ready")
    checks: dict[str, dict[str, Any]]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "failed": [],
                    "checks": {
                        "model_server": {"ok": True, "state": "serving", "version": "3"},
                        "redis": {"ok": True},
                        "key_store": {"ok": True},
                    },
                }
            ]
        }
    )


# --- /predict ----------------------------------------------------------------------------------


class PredictRequest(_Strict):
    model_name: str = Field(description="Registered model name (property_friends_best_model)")
    features: list[Any] = Field(
        description=(
            "One object per property with type, sector, net_usable_area, net_area, n_rooms, "
            "n_bathroom, latitude, longitude. Rows are checked with the served model's own rules."
        )
    )
    version: str | None = Field(None, description="Serve this registered version (optional)")
    alias: str | None = Field(None, description="Serve the version behind this alias (optional)")
    interval: float | None = Field(
        None, ge=0.5, le=0.99,
        description="Ask for a price interval at this coverage level (0.5 to 0.99): `intervals` "
        "gets one {lower, upper, level} in UF per row")
    explain: bool = Field(
        False, description="Ask why: `explanations` gets per row a base and one contribution per "
        "input plus `similar_listings`, adding up to log(price) (exp(c) is each part's factor)")
    comparables: int = Field(
        0, ge=0, le=10,
        description="Ask for the k most similar training listings behind each price (needs the "
        "`comparables` capability, admin keys by default)")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [SPEC_PREDICT_BODY, {**SPEC_PREDICT_BODY, "alias": "champion"},
                         {**SPEC_PREDICT_BODY, "interval": 0.8, "explain": True}]
        },
    )


class PriceInterval(BaseModel):
    lower: float = Field(description="UF")
    upper: float = Field(description="UF")
    level: float = Field(description="Coverage the interval is calibrated for")


class PriceExplanation(BaseModel):
    space: Literal["log_price"] = Field(
        description="base + sum(contributions) = log(price in UF); exp(c) is the factor each part "
        "multiplies the price by")
    base: float = Field(description="The model's expected log price over its training listings")
    contributions: dict[str, float] = Field(
        description="One per input (engineered features folded back onto them) and "
        "`similar_listings` (how far blending in the most similar listings moved the log price)")


class ComparableListing(BaseModel):
    type: str
    sector: str
    net_usable_area: float
    net_area: float
    n_rooms: float
    n_bathroom: float
    latitude: float
    longitude: float
    price: float = Field(description="UF")
    distance: float = Field(description="In the similarity space: 1 unit is 200 m, or 8 % of "
                            "usable area, 10 % of total area, 2 rooms, 4 bathrooms")


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    request_id: str
    predictions: list[float] = Field(description="Price in UF, one per row, in request order")
    served_alias: str | None = Field(
        None, description="Who answered: `champion`; `canary` (the challenger, for a share of "
        "requests while canary traffic is on); the alias asked; `explicit` (a version asked); "
        "`fallback` (degraded)")
    degraded: bool = Field(False, description="True when the champion's server was down and "
                           "another loaded version answered (see served_version)")
    served_version: str | None = Field(None, description="The version that answered, when degraded")
    degraded_reason: str | None = None
    intervals: list[PriceInterval] | None = Field(
        None, description="When `interval` was asked (or config gives one): one per row")
    explanations: list[PriceExplanation] | None = Field(
        None, description="When `explain` was asked: one per row")
    comparables: list[list[ComparableListing]] | None = Field(
        None, description="When `comparables` was asked: per row, the k most similar training "
        "listings, nearest first (the first ones are those the price blends in)")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "property_friends_best_model",
                    "model_version": "3",
                    "request_id": _REQUEST_ID_EXAMPLE,
                    "predictions": [21034.7],
                    "served_alias": "champion",
                },
                {
                    "model_name": "property_friends_best_model",
                    "model_version": "3",
                    "request_id": _REQUEST_ID_EXAMPLE,
                    "predictions": [21034.7],
                    "intervals": [{"lower": 18100.2, "upper": 24420.9, "level": 0.8}],
                    "explanations": [{"space": "log_price", "base": 8.71, "contributions": {
                        "type": 0.12, "sector": 0.35, "net_usable_area": 0.41, "net_area": 0.08,
                        "n_rooms": -0.02, "n_bathroom": 0.05, "latitude": 0.09,
                        "longitude": 0.11, "similar_listings": 0.06}}],
                },
            ]
        }
    )


# --- /train ------------------------------------------------------------------------------------


# MLflow refuses an empty experiment name; refusing it here gives the client a 422 naming the field
# (found by schemathesis: the tracking server's refusal came back as a 503).
EXPERIMENT_NAME_LENGTH = {"min_length": 1, "max_length": 500}


class ExperimentConfig(_Strict):
    experiment_name: str | None = Field(None, description="MLflow experiment (created if new)",
                                        **EXPERIMENT_NAME_LENGTH)


class DataConfig(_Strict):
    categorical_columns: list[str] | None = None
    train_cols: list[str] | None = None
    target: str | None = None


class DbConfig(_Strict):
    db_type: Literal["csv", "postgres", "sample"] = Field(
        description="Data source: the conf/data/ group to use"
    )
    db_config: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Source settings: csv: train_path, test_path; postgres: train_table, test_table, "
            "train_query, test_query (the connection URL comes from the worker's environment); "
            "sample: n_train, n_test, seed"
        ),
    )


class PipelineConfig(_Strict):
    model_module: str = Field(description="Module of an allowlisted regressor")
    model: str = Field(description="Class name of an allowlisted regressor")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Estimator parameters: known names, scalar values only"
    )


class TrainRequest(_Strict):
    experiment_config: ExperimentConfig | None = None
    data_config: DataConfig | None = None
    db_config: DbConfig | None = None
    pipeline_config: PipelineConfig | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                SPEC_TRAIN_BODY,
                {
                    "experiment_config": {"experiment_name": "quick-sample"},
                    "db_config": {"db_type": "sample", "db_config": {"n_train": 2000}},
                },
            ]
        },
    )


class TrainingParametersOut(BaseModel):
    model: str = Field(description="Hydra model group passed as the Project's `model` parameter")
    overrides: str = Field(description="Hydra overrides passed as the Project's `overrides`")
    experiment_name: str


class TrainAccepted(BaseModel):
    job_id: str
    status: str = "queued"
    status_url: str
    parameters: TrainingParametersOut

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "5b1f0c3e-7d9a-4c2b-9e8f-1a2b3c4d5e6f",
                    "status": "queued",
                    "status_url": "/job_status/5b1f0c3e-7d9a-4c2b-9e8f-1a2b3c4d5e6f",
                    "parameters": {
                        "model": "gbr",
                        "overrides": "experiment_name=Property-Friends-Experiment data=csv "
                        "model.params.learning_rate=0.05 model.params.n_estimators=150 "
                        "model.params.max_depth=6 model.params.loss=absolute_error",
                        "experiment_name": "Property-Friends-Experiment",
                    },
                }
            ]
        }
    )


class JobProgress(BaseModel):
    step: str
    fraction: float
    message: str = ""


class JobStatusResponse(BaseModel):
    job_id: str
    status: str = Field(description="queued, started, finished, failed (or another RQ state)")
    progress: JobProgress | None = None
    run_id: str | None = Field(None, description="MLflow parent run of the training")
    metrics: dict[str, float] = Field(default_factory=dict, description="test_* metrics")
    version: str | None = Field(None, description="Registered model version, if registered")
    champion_moved: bool | None = None
    validated: bool | None = None
    error: str | None = None
    enqueued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "5b1f0c3e-7d9a-4c2b-9e8f-1a2b3c4d5e6f",
                    "status": "finished",
                    "progress": {"step": "register", "fraction": 1.0, "message": "done"},
                    "run_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                    "metrics": {"test_rmse": 4410.2, "test_mae": 2130.5, "test_r2": 0.88},
                    "version": "4",
                    "champion_moved": True,
                    "validated": True,
                    "error": None,
                }
            ]
        }
    )


# --- /best_model -------------------------------------------------------------------------------


class BestModelExperimentConfig(_Strict):
    experiment_name: str = Field(description="MLflow experiment whose runs are ranked",
                                 **EXPERIMENT_NAME_LENGTH)
    metric: RankingMetric = Field(
        "mse", description="Ranks evaluation runs by metrics.test_<metric>"
    )
    metric_goal: Literal["min", "max"] | None = Field(
        None, description="min or max (default: max for r2, min otherwise)"
    )


class BestModelRequest(_Strict):
    experiment_config: BestModelExperimentConfig
    force: bool = Field(
        False,
        description="Promote the best run even when it failed evaluate's thresholds "
        "(refused with 409 otherwise)",
    )

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SPEC_BEST_MODEL_BODY]})


class BestModelResponse(BaseModel):
    model_name: str
    version: str
    run_id: str = Field(description="The evaluation run that ranked best")
    metric: str
    value: float
    alias: str
    registered: bool = Field(description="Whether a new registered version was created")
    previous_version: str | None = Field(None, description="Who held the alias before")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "property_friends_best_model",
                    "version": "4",
                    "run_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                    "metric": "test_mse",
                    "value": 19448964.0,
                    "alias": "champion",
                    "registered": False,
                    "previous_version": "3",
                }
            ]
        }
    )


class ModelsResponse(BaseModel):
    model_name: str
    serving: dict[str, Any] = Field(description="The model-server supervisor's status")
    aliases: dict[str, str | None]
    alias_history: list[dict[str, Any]] = Field(description="Most recent alias moves, oldest first")
    versions: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per alias: its version's test metrics, verdict (`validated`), creation time "
                    "(ms since the epoch), run id and who registered it",
    )
    traffic: dict[str, Any] | None = Field(
        None, description="Shadow and canary traffic on this proxy: the fractions in force, "
        "whether they come from the config or the run-time setting (`valuation traffic set`), "
        "and the challenger version being served for them (null: none)")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "property_friends_best_model",
                    "serving": {"state": "serving", "version": "4", "detail": "version 4 at "
                                "http://127.0.0.1:5001"},
                    "aliases": {"champion": "4", "challenger": "4"},
                    "alias_history": [
                        {"alias": "champion", "from_version": "3", "to_version": "4",
                         "reason": "best_model by test_mse (min)", "at": "2025-01-01T12:00:00+00:00",
                         "actor": "1a2b3c4d5e6f"}
                    ],
                    "traffic": {"shadow": 0.1, "canary": 0.0, "source": "runtime",
                                "set_at": "2025-01-02T09:00:00+00:00", "set_by": "cli:ops",
                                "challenger_served_version": "5"},
                }
            ]
        }
    )


class MonitoringAccepted(BaseModel):
    """A monitoring run queued by POST /monitoring/run."""

    job_id: str
    status: str = "queued"
    status_url: str
    queue: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"job_id": "0c7d2f7e-55b1-4f55-9a43-6d2b1c9e8f10", "status": "queued",
                          "status_url": "/job_status/0c7d2f7e-55b1-4f55-9a43-6d2b1c9e8f10",
                          "queue": "monitoring"}]
        }
    )


class MonitoringRun(BaseModel):
    """One monitoring run's figures, as /metrics shows them."""

    model_version: str = Field(description="The version the run judged (the champion then)")
    at: float = Field(description="When the run ended (Unix time, seconds)")
    window_rows: int = Field(description="Predictions in the run's window")
    drift_note: str | None = Field(None, description="Why drift was not judged, when it was not")
    drifted: list[str] = Field(description="Features whose deciding statistic crossed its threshold")
    features: dict[str, dict[str, float | None]] = Field(
        description="Per feature: psi, ks_statistic, ks_pvalue, wasserstein_normalized or "
                    "jensenshannon (None where a statistic could not be computed)")
    prediction: dict[str, float | None] = Field(
        description="The predicted price's drift statistics against the test-set predictions")
    feedback_rows: int = Field(description="Predictions of the version with an observed price")
    live_error: dict[str, float | None] = Field(description="MAE, MdAPE, PPE10, RMSE on them")
    test_error: dict[str, float | None] = Field(description="The version's test-set figures")


class MonitoringLatest(BaseModel):
    """GET /monitoring/latest: the latest finished monitoring run, if any, and the retrainings
    monitoring has triggered."""

    latest: MonitoringRun | None = Field(
        description="The latest finished run; null before the first one")
    note: str | None = Field(None, description="Why `latest` is null")
    retraining_triggered: dict[str, int] = Field(
        description="Retrainings the monitoring policy enqueued so far, by reason")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"latest": {"model_version": "4", "at": 1764698400.0, "window_rows": 5000,
                                     "drift_note": None, "drifted": ["sector"],
                                     "features": {"sector": {"jensenshannon": 0.12, "psi": 0.31}},
                                     "prediction": {"wasserstein_normalized": 0.04},
                                     "feedback_rows": 321, "live_error": {"medape": 0.11},
                                     "test_error": {"medape": 0.09}},
                          "note": None, "retraining_triggered": {"drift": 1}}]
        }
    )
