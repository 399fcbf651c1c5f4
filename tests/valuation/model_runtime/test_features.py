"""FeatureEncoder: shapes, unknown areas, row/batch consistency, storage, out-of-fold features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from valuation.model_runtime.features import FeatureEncoder, frame_columns

KINDS_AND_PARAMS = [
    ("raw", None),
    ("engineered", None),
    ("engineered", {"similar_weight": 0.4, "similar_k": 2}),
]


@pytest.fixture(scope="module", params=KINDS_AND_PARAMS, ids=["raw", "engineered", "similar"])
def fitted(request, features, prices):
    kind, params = request.param
    encoder = FeatureEncoder(kind, params)
    return encoder, encoder.fit_transform(features, prices)


def test_matrix_shape_matches_feature_names(fitted, features):
    encoder, matrix = fitted
    assert matrix.dtype == np.float64
    assert matrix.shape == (len(features), len(encoder.feature_names))
    assert encoder.transform(frame_columns(features)).shape == matrix.shape


def test_raw_encoding_is_the_notebooks(features, prices):
    encoder = FeatureEncoder("raw")
    matrix = encoder.fit_transform(features, prices)
    assert encoder.feature_names[:2] == ("type_target_mean", "sector_target_mean")
    # Numerics pass through untouched; categories become (smoothed) mean prices.
    np.testing.assert_array_equal(matrix[:, 2], features["net_usable_area"].to_numpy())
    casa = features["type"].to_numpy() == "casa"
    assert np.allclose(matrix[casa, 0], prices[casa].mean(), rtol=1e-6)
    assert not np.isnan(matrix).any()


def test_zero_area_is_unknown_not_tiny(features, prices):
    encoder = FeatureEncoder("engineered")
    matrix = encoder.fit_transform(features, prices)
    names = encoder.feature_names
    usable = matrix[:, names.index("usable_area")]
    total = matrix[:, names.index("total_area")]
    ratio = matrix[:, names.index("usable_to_total")]
    zero_usable = features["net_usable_area"].to_numpy() == 0
    zero_total = features["net_area"].to_numpy() == 0
    assert zero_usable.any() and zero_total.any()
    assert np.isnan(usable[zero_usable]).all() and np.isnan(total[zero_total]).all()
    assert np.isnan(ratio[zero_usable | zero_total]).all()
    # NaN appears only where an area is unknown: every other column is finite everywhere.
    area_derived = {"usable_area", "total_area", "usable_to_total", "usable_per_room"}
    others = [j for j, n in enumerate(names) if n not in area_derived]
    assert np.isfinite(matrix[:, others]).all()
    assert np.isfinite(usable[~zero_usable]).all()


def test_unknown_value_replaces_nan_for_estimators_that_reject_it(features, prices):
    encoder = FeatureEncoder("engineered", {"unknown_value": -1.0})
    matrix = encoder.fit_transform(features, prices)
    assert not np.isnan(matrix).any()
    zero_usable = features["net_usable_area"].to_numpy() == 0
    assert (matrix[zero_usable, encoder.feature_names.index("usable_area")] == -1.0).all()


def test_single_row_equals_its_row_in_the_batch(fitted, features):
    encoder, _ = fitted
    columns = frame_columns(features)
    batch = encoder.transform(columns)
    for row in (0, 5, 9, 123, len(features) - 1):
        one = encoder.transform({k: v[row:row + 1] for k, v in columns.items()})
        np.testing.assert_array_equal(one[0], batch[row])


def test_save_load_round_trip(fitted, features, tmp_path):
    encoder, _ = fitted
    encoder.save(tmp_path / "encoder")
    stored = {p.name for p in (tmp_path / "encoder").iterdir()}
    assert stored == {"encoder.json", "arrays.npz"}  # JSON + npz, no pickle
    json.loads((tmp_path / "encoder" / "encoder.json").read_text())
    loaded = FeatureEncoder.load(tmp_path / "encoder")
    columns = frame_columns(features)
    np.testing.assert_array_equal(loaded.transform(columns), encoder.transform(columns))
    assert loaded.feature_names == encoder.feature_names


def test_engineered_matrix_does_not_depend_on_prices(features, prices):
    # No column derives from the target, so nothing can leak from a row's own price.
    shuffled = np.random.default_rng(0).permutation(prices)
    first = FeatureEncoder("engineered", {"similar_weight": 0.4}).fit_transform(features, prices)
    second = FeatureEncoder("engineered", {"similar_weight": 0.4}).fit_transform(features, shuffled)
    np.testing.assert_array_equal(first, second)


def test_similar_listings_price_comes_from_the_nearest_of_the_same_type(features, prices):
    encoder = FeatureEncoder("engineered", {"similar_weight": 0.4, "similar_k": 1})
    encoder.fit_transform(features, prices)
    columns = frame_columns(features)
    # k=1 on a training row: the most similar listing is the row itself.
    np.testing.assert_allclose(encoder.similar_log_price(columns), np.log(prices))
    # A casa never borrows a departamento's price: switch one row's type and its answer changes
    # to the price of some casa.
    row = int(np.flatnonzero(columns["type"] == "departamento")[0])
    one = {k: v[row:row + 1].copy() for k, v in columns.items()}
    one["type"] = np.array(["casa"], dtype=object)
    casa_log_prices = np.log(prices[columns["type"] == "casa"])
    assert np.isclose(encoder.similar_log_price(one)[0], casa_log_prices).any()
    assert encoder.similar_weight == 0.4
    assert FeatureEncoder("engineered").similar_weight == 0.0


def test_unknown_category_is_a_clear_error(features, prices):
    encoder = FeatureEncoder("engineered")
    encoder.fit_transform(features, prices)
    columns = frame_columns(features.iloc[:1])
    columns["sector"] = np.array(["atlantis"], dtype=object)
    with pytest.raises(ValueError, match="sector.*atlantis"):
        encoder.transform(columns)


def test_bad_arguments_are_rejected(features, prices):
    with pytest.raises(ValueError, match="unknown feature kind"):
        FeatureEncoder("fancy")
    with pytest.raises(ValueError, match="unknown feature_params"):
        FeatureEncoder("engineered", {"similar_weigth": 0.4})
    with pytest.raises(ValueError, match="similar_weight must be in"):
        FeatureEncoder("engineered", {"similar_weight": 1.5})
    with pytest.raises(ValueError, match="not fitted"):
        FeatureEncoder("engineered").transform(frame_columns(features))
    with pytest.raises(ValueError, match="rows but"):
        FeatureEncoder("engineered").fit_transform(features, prices[:-1])
