"""Intervals, explanations and comparables on real model output: a small LightGBM model with its
calibration fitted by the project's own code on synthetic data, stored and loaded back the way the
pyfunc loads it (JSON, npz, LightGBM text; no pickle); and the pipeline's logged champion through
MLflow's `params`."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from valuation.calibration import fit_calibration
from valuation.config import load_config
from valuation.model_runtime.bundle import INTERVALS_DIR, load_bundle, load_calibration, save_bundle
from valuation.model_runtime.explain import PARTS
from valuation.model_runtime.extras import (
    ExtrasAsked,
    available_extras,
    predict_with_extras,
)
from valuation.model_runtime.features import frame_columns
from valuation.model_runtime.neighbours import LISTING_COLUMNS
from valuation.model_runtime.schema import FEATURES
from valuation.model_runtime.validation import ValidationRules
from valuation.synthetic import generate_frame
from valuation.training import fit_model


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory):
    cfg = load_config(["model=lgbm", "model.params.n_estimators=30", "model.params.n_jobs=1",
                       "intervals.folds=3", "intervals.error_model.n_estimators=30"])
    train = generate_frame(600, seed=3)
    features, price = train[list(FEATURES)], train["price"].to_numpy()
    fitted = fit_model(cfg.model, features, price)
    calibration = fit_calibration(cfg.model, features, price, cfg.intervals, seed=3)
    rules = ValidationRules.from_config(cfg.validation, sectors=sorted(train["sector"].unique()))
    directory = save_bundle(fitted, rules, "lightgbm", tmp_path_factory.mktemp("bundle") / "b",
                            calibration)
    loaded, _ = load_bundle(directory)
    return loaded, load_calibration(directory), train, directory


@pytest.fixture(scope="module")
def query(stored):
    return frame_columns(generate_frame(50, seed=4)[list(FEATURES)])


def test_explanations_add_up_to_the_log_price(stored, query) -> None:
    fitted, calibration, _, _ = stored
    answers = predict_with_extras(fitted, calibration, query, ExtrasAsked(explain=True))
    prices = fitted.predict_columns(query)
    for answer, price in zip(answers, prices, strict=True):
        explanation = answer["explanation"]
        assert explanation["space"] == "log_price"
        assert tuple(explanation["contributions"]) == PARTS
        total = explanation["base"] + sum(explanation["contributions"].values())
        assert total == pytest.approx(np.log(price), abs=1e-9)
        assert answer["price"] == pytest.approx(price, rel=1e-12)  # the plain path's price
    # The blend is a real part: the similar listings move some prices.
    assert any(abs(a["explanation"]["contributions"]["similar_listings"]) > 1e-3 for a in answers)
    # Location matters to this model: the coordinates' parts are not all zero.
    assert any(abs(a["explanation"]["contributions"]["latitude"]) > 1e-6 for a in answers)


def test_intervals_hold_the_price_and_widen_with_the_level(stored, query) -> None:
    fitted, calibration, _, _ = stored
    narrow = predict_with_extras(fitted, calibration, query, ExtrasAsked(interval=0.5))
    wide = predict_with_extras(fitted, calibration, query, ExtrasAsked(interval=0.95))
    for small, big in zip(narrow, wide, strict=True):
        assert small["interval"]["level"] == 0.5 and big["interval"]["level"] == 0.95
        assert big["interval"]["lower"] <= small["interval"]["lower"] <= small["price"]
        assert small["price"] <= small["interval"]["upper"] <= big["interval"]["upper"]
        assert big["interval"]["upper"] > big["interval"]["lower"]


def test_interval_levels_outside_the_range_are_refused(stored) -> None:
    for level in (0.3, 0.995, 1.0):
        with pytest.raises(ValueError, match="interval level must be between 0.5 and 0.99"):
            ExtrasAsked.from_params({"interval": level})
    with pytest.raises(ValueError, match="'comparables' must be between 0 and 10"):
        ExtrasAsked.from_params({"comparables": 11})
    assert not ExtrasAsked.from_params({"interval": 0.0, "explain": False, "comparables": 0}).any


def test_comparables_are_the_listings_the_blend_used(stored, query) -> None:
    fitted, calibration, train, _ = stored
    similar = fitted.encoder.similar
    answers = predict_with_extras(fitted, calibration, query, ExtrasAsked(comparables=4))
    expected_keys = {"type", *LISTING_COLUMNS, "distance"}
    blended = similar.log_price(query)
    for row, answer in enumerate(answers):
        listings = answer["comparables"]
        assert len(listings) == 4 and all(set(item) == expected_keys for item in listings)
        assert all(item["type"] == query["type"][row] for item in listings)
        distances = [item["distance"] for item in listings]
        assert distances == sorted(distances)
        # The first k are the ones the price blends in: their inverse-distance weighted log
        # price is the similar-listings price the model used.
        used = listings[: similar.k]
        weights = np.array([1.0 / (item["distance"] + similar.softening) for item in used])
        logs = np.log([item["price"] for item in used])
        assert (weights * logs).sum() / weights.sum() == pytest.approx(blended[row], abs=1e-5)
    # A training listing asked about finds itself at distance 0, with its own features and price.
    own = train.iloc[[7]]
    [[first, *_]] = similar.comparables(frame_columns(own[list(FEATURES)]), 3)
    assert first["distance"] == pytest.approx(0.0, abs=1e-9)
    assert first["price"] == pytest.approx(own["price"].iloc[0])
    assert first["sector"] == own["sector"].iloc[0].strip().lower()
    assert first["net_area"] == pytest.approx(own["net_area"].iloc[0])


def test_a_model_without_calibration_or_listings_says_so(stored, query, tmp_path: Path) -> None:
    fitted, _, _, directory = stored
    assert available_extras(fitted, load_calibration(directory)) == ["interval", "explain", "comparables"]
    # What a version logged before these existed looks like: no intervals/, no stored listings.
    for reference in fitted.encoder.similar.references.values():
        reference.listings = None
    try:
        assert available_extras(fitted, None) == ["explain"]
        with pytest.raises(ValueError, match="cannot give interval, comparables"):
            predict_with_extras(fitted, None, query, ExtrasAsked(interval=0.8, comparables=2))
    finally:  # the module's model is shared: put its listings back
        restored, _ = load_bundle(directory)
        for kind, reference in fitted.encoder.similar.references.items():
            reference.listings = restored.encoder.similar.references[kind].listings
    assert (directory / INTERVALS_DIR / "calibration.json").exists()


@pytest.mark.slow
def test_the_logged_champion_answers_params(portable_registry) -> None:
    """The pipeline's own LightGBM model, loaded by MLflow: `params` reach predict, defaults keep
    the plain list of prices, and the explanation adds up."""
    mlflow.set_tracking_uri(portable_registry.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/property_friends_best_model/{portable_registry.champion}")
    rows = generate_frame(5, seed=9)[list(FEATURES)]
    plain = model.predict(rows)
    assert all(isinstance(price, float) for price in plain)
    answers = model.predict(rows, params={"interval": 0.8, "explain": True, "comparables": 2})
    for answer, price in zip(answers, plain, strict=True):
        assert answer["price"] == pytest.approx(price)
        assert answer["interval"]["lower"] <= price <= answer["interval"]["upper"]
        explanation = answer["explanation"]
        assert explanation["base"] + sum(explanation["contributions"].values()) == pytest.approx(
            np.log(price), abs=1e-9)
        assert len(answer["comparables"]) == 2
    assert model.metadata.metadata["prediction_extras"] == ["interval", "explain", "comparables"]
