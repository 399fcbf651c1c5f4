"""The allowlist of regressors a configuration or a request may name, and their safe storage.

Nothing here imports a module or class chosen by a caller: configs and requests name an allowlist
key (or a module/class pair that must match an entry exactly), and parameters are checked against
the estimator's own parameter names with scalar values only, so no callable or object can be
smuggled in. Estimators are stored without pickle: LightGBM as its native text model, scikit-learn
estimators with skops and an explicit list of trusted types.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ESTIMATOR_FILE = "estimator.json"


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


# --- storage without pickle -----------------------------------------------------------------

def save_estimator(estimator: Any, directory: Path, key: str) -> None:
    """Write a fitted estimator to `directory` (LightGBM text model, or skops for scikit-learn)."""
    directory.mkdir(parents=True, exist_ok=True)
    if key == "lightgbm":
        estimator.booster_.save_model(str(directory / "model.txt"))
        fmt = "lightgbm-text"
    else:
        import skops.io as sio

        sio.dump(estimator, directory / "model.skops")
        fmt = "skops"
    (directory / ESTIMATOR_FILE).write_text(json.dumps({"key": key, "format": fmt}))


def load_estimator(directory: Path) -> Any:
    """Load what `save_estimator` wrote. skops refuses any type outside the trusted list."""
    meta = json.loads((directory / ESTIMATOR_FILE).read_text())
    get_spec(meta["key"])  # the stored key must still be allowlisted
    if meta["format"] == "lightgbm-text":
        import lightgbm

        return lightgbm.Booster(model_file=str(directory / "model.txt"))
    if meta["format"] == "skops":
        import skops.io as sio

        path = directory / "model.skops"
        untrusted = sio.get_untrusted_types(file=path)
        unexpected = [t for t in untrusted if not _is_trusted_type(t)]
        if unexpected:
            raise ValueError(f"{path}: refusing to load untrusted types {unexpected}")
        return sio.load(path, trusted=untrusted)
    raise ValueError(f"{directory / ESTIMATOR_FILE}: unknown estimator format {meta['format']!r}")


# Types beyond skops' own defaults that our allowlisted estimators need, named one by one (what
# `skops.io.get_untrusted_types` reports for every shipped config): the tree structures of
# scikit-learn's forests and boosting. No prefix rules: a prefix such as "builtins." would also
# admit functions like builtins.open. A legitimately new type is refused by name until reviewed
# and added here.
TRUSTED_SKOPS_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})


def _is_trusted_type(type_name: str) -> bool:
    return type_name in TRUSTED_SKOPS_TYPES
