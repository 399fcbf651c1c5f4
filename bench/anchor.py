"""The usual way to serve this model, as the yardstick: a plain scikit-learn Pipeline (ordinal-encoded
categoricals + the numeric features) logged with MLflow's sklearn flavor and served by
`mlflow models serve --env-manager local` with its defaults.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bench.common import LOOPBACK
from valuation.model_runtime.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, TARGET

ANCHOR_EXPERIMENT = "bench-anchor"
ANCHOR_MODEL = "gbr"  # conf/model/gbr.yaml: the specification's GradientBoostingRegressor example


def plain_pipeline(estimator: Any) -> Any:
    """OrdinalEncoder on type/sector, numerics passed through, then `estimator`."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encode = ColumnTransformer(
        [("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
          list(CATEGORICAL_FEATURES))],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return Pipeline([("encode", encode), ("model", estimator)])


def config_estimator(model: str, overrides: Sequence[str] = ()) -> tuple[str, dict[str, Any], Any]:
    """The estimator a conf/model/ option names, built with its params (after `overrides`, e.g.
    "model.params.n_estimators=100"): (key, params, estimator)."""
    from omegaconf import OmegaConf

    from valuation.config import load_config
    from valuation.estimators import build_estimator

    cfg = load_config([f"model={model}", *overrides]).model
    params = OmegaConf.to_container(cfg.params, resolve=True)
    return str(cfg.estimator), params, build_estimator(str(cfg.estimator), params)


def fit_plain_pipeline(model: str, train: pd.DataFrame, overrides: Sequence[str] = ()) -> tuple[Any, float]:
    """A plain Pipeline with the estimator of conf/model/<model>.yaml, fitted on `train`.
    Returns (pipeline, fit seconds)."""
    _, _, estimator = config_estimator(model, overrides)
    pipeline = plain_pipeline(estimator)
    features = train[list(FEATURES)].copy()
    for column in CATEGORICAL_FEATURES:
        features[column] = features[column].astype(object)
    started = time.perf_counter()
    pipeline.fit(features, train[TARGET].to_numpy(dtype=float))
    return pipeline, time.perf_counter() - started


def log_anchor(train: pd.DataFrame, tracking_uri: str) -> tuple[str, float]:
    """Fit the anchor on the raw train table (as the specification did) and log it with the sklearn
    flavor into `tracking_uri`. Returns (model URI, fit seconds)."""
    import mlflow

    from valuation.config import ensure_experiment

    pipeline, fit_s = fit_plain_pipeline(ANCHOR_MODEL, train)
    mlflow.set_tracking_uri(tracking_uri)
    ensure_experiment(ANCHOR_EXPERIMENT, tracking_uri)  # artifacts beside the store, not in ./mlruns
    mlflow.set_experiment(ANCHOR_EXPERIMENT)
    example = train[list(FEATURES)].head(5).copy()
    for column in CATEGORICAL_FEATURES:
        example[column] = example[column].astype(object)
    for column in NUMERIC_FEATURES:
        example[column] = example[column].astype(float)
    with mlflow.start_run(run_name="anchor-sklearn-pipeline"):
        # MLflow's default sklearn serialization (skops) asks us to vouch for the tree type we made.
        info = mlflow.sklearn.log_model(pipeline, name="model", input_example=example,
                                        skops_trusted_types=["sklearn.tree._tree.Tree"])
    return info.model_uri, fit_s


def serve_command(model_uri: str, port: int) -> list[str]:
    """`mlflow models serve` with its defaults (1 worker, default timeout), local environment."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
            "--env-manager", "local", "-h", LOOPBACK, "-p", str(port)]


def serve_env(tracking_uri: str) -> Mapping[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    # MLflow execs a bare `uvicorn`: use the one next to this interpreter.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env
