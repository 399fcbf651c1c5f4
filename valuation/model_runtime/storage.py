"""Fitted estimators stored without pickle: LightGBM as its native text model, scikit-learn
estimators with skops and an explicit list of trusted types. A stored model from an untrusted
place therefore cannot run code when it is loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ESTIMATOR_FILE = "estimator.json"
# The allowlist keys (valuation.estimators.ESTIMATORS) whose fitted estimators this package can
# load; a test keeps the two in step.
STORED_ESTIMATOR_KEYS = frozenset({"gbr", "hgb", "rf", "lightgbm"})


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
    if meta["key"] not in STORED_ESTIMATOR_KEYS:
        raise ValueError(f"{directory / ESTIMATOR_FILE}: unknown estimator {meta['key']!r}; "
                         f"this model package loads {', '.join(sorted(STORED_ESTIMATOR_KEYS))}")
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
