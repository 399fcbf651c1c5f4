"""The allowlist of regressors a configuration or a request may name, and their safe storage.

Nothing here imports a module or class chosen by a caller: configs and requests name an allowlist
key (or a module/class pair that must match an entry exactly), and parameters are checked against
the estimator's own parameter names with scalar values only, so no callable or object can be
smuggled in. Fitted estimators are stored without pickle by valuation.model_runtime.storage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class EstimatorNotAllowed(ValueError):
    """A requested estimator is not in the allowlist."""


class InvalidEstimatorParams(ValueError):
    """A parameter name is unknown to the estimator, or its value is not a plain scalar."""


@dataclass(frozen=True)
class EstimatorSpec:
    key: str
    module: str
    class_name: str
    model_group: str  # the conf/model/ group that configures it

    def factory(self) -> Callable[..., Any]:
        return _FACTORIES[self.key]()


def _gbr() -> Callable[..., Any]:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor


def _hgb() -> Callable[..., Any]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor


def _rf() -> Callable[..., Any]:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor


def _lightgbm() -> Callable[..., Any]:
    from lightgbm import LGBMRegressor

    return LGBMRegressor


# Literal imports only: the key selects one of these functions, never an import path.
_FACTORIES: dict[str, Callable[[], Callable[..., Any]]] = {
    "gbr": _gbr,
    "hgb": _hgb,
    "rf": _rf,
    "lightgbm": _lightgbm,
}

ESTIMATORS: dict[str, EstimatorSpec] = {
    "gbr": EstimatorSpec("gbr", "sklearn.ensemble", "GradientBoostingRegressor", "gbr"),
    "hgb": EstimatorSpec("hgb", "sklearn.ensemble", "HistGradientBoostingRegressor", "hgb"),
    "rf": EstimatorSpec("rf", "sklearn.ensemble", "RandomForestRegressor", "rf"),
    "lightgbm": EstimatorSpec("lightgbm", "lightgbm", "LGBMRegressor", "lgbm"),
}

# Parameters whose values are objects or callables in scikit-learn/LightGBM: never settable.
_FORBIDDEN_PARAMS = frozenset({"init", "objective", "callbacks", "monotonic_cst", "interaction_cst"})


# LightGBM takes its native parameters as keyword arguments that get_params() does not list;
# these plain-valued ones may be set too.
_EXTRA_PARAMS: dict[str, frozenset[str]] = {
    "lightgbm": frozenset({
        "verbose", "verbosity", "max_bin", "min_data_in_bin", "force_col_wise", "force_row_wise",
        "extra_trees", "path_smooth", "linear_tree", "deterministic", "num_threads", "seed",
        "bagging_seed", "feature_fraction_seed", "min_sum_hessian_in_leaf", "cat_smooth", "max_cat_to_onehot",
    }),
}


def resolve_estimator(module: str, class_name: str) -> EstimatorSpec:
    """The allowlist entry for a module/class pair, e.g. ("sklearn.ensemble", "GradientBoostingRegressor")."""
    for spec in ESTIMATORS.values():
        if spec.module == module and spec.class_name == class_name:
            return spec
    allowed = ", ".join(f"{s.module}.{s.class_name}" for s in ESTIMATORS.values())
    raise EstimatorNotAllowed(f"estimator '{module}.{class_name}' is not allowed; choose one of: {allowed}")


def get_spec(key: str) -> EstimatorSpec:
    try:
        return ESTIMATORS[key]
    except KeyError:
        raise EstimatorNotAllowed(
            f"estimator '{key}' is not allowed; choose one of: {', '.join(sorted(ESTIMATORS))}"
        ) from None


def allowed_params(key: str) -> set[str]:
    """Parameter names that configs and requests may set for this estimator."""
    estimator = get_spec(key).factory()()
    known = set(estimator.get_params(deep=False)) | _EXTRA_PARAMS.get(key, frozenset())
    return known - _FORBIDDEN_PARAMS


def check_params(key: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Plain-scalar parameters known to the estimator; raises InvalidEstimatorParams otherwise."""
    known = allowed_params(key)
    checked: dict[str, Any] = {}
    for name, value in params.items():
        if name not in known:
            raise InvalidEstimatorParams(
                f"parameter '{name}' is not accepted by estimator '{key}'; known: {', '.join(sorted(known))}"
            )
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise InvalidEstimatorParams(
                f"parameter '{name}' must be a number, string, boolean or null, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidEstimatorParams(f"parameter '{name}' must be finite, got {value}")
        checked[name] = value
    return checked


def build_estimator(key: str, params: Mapping[str, Any] | None = None) -> Any:
    """A fresh, unfitted estimator from the allowlist with checked parameters."""
    spec = get_spec(key)
    return spec.factory()(**check_params(key, dict(params or {})))
