"""The synthetic generator: deterministic, the real schema, plausible and learnable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from valuation.model_runtime.schema import FEATURES, TARGET
from valuation.synthetic import DEFECT_KINDS, SECTORS, defect_counts, generate_frame


def test_same_seed_same_frame_other_seed_other_frame():
    pd.testing.assert_frame_equal(generate_frame(300, 5), generate_frame(300, 5))
    assert not generate_frame(300, 5).equals(generate_frame(300, 6))


def test_schema_matches_the_real_files():
    frame = generate_frame(50, 1)
    assert list(frame.columns) == [*FEATURES, TARGET]
    assert all(pd.api.types.is_string_dtype(frame[c]) for c in ("type", "sector"))
    numeric = ["net_usable_area", "net_area", "n_rooms", "n_bathroom", "latitude", "longitude"]
    assert all(frame[c].dtype == np.float64 for c in numeric)
    assert frame["price"].dtype == np.int64
    assert not frame.isna().any().any()
    assert generate_frame(0, 1).shape == (0, 9)


def test_distributions_are_plausible():
    frame = generate_frame(5000, 3)
    assert set(frame["type"]) == {"casa", "departamento"}
    assert frame["type"].eq("casa").mean() == pytest.approx(0.41, abs=0.03)
    shares = frame["sector"].value_counts(normalize=True)
    assert set(shares.index) == set(SECTORS)
    for sector, profile in SECTORS.items():
        assert shares[sector] == pytest.approx(profile.share, abs=0.03)
        rows = frame[frame["sector"] == sector]
        assert rows["latitude"].between(*profile.lat_range).all()
        assert rows["longitude"].between(*profile.lon_range).all()
    assert (frame["net_usable_area"] > 0).all()
    assert (frame["net_area"] >= frame["net_usable_area"]).all()
    assert (frame["price"] >= 1000).all()
    assert frame[["n_rooms", "n_bathroom"]].ge(1).all().all()
    # Rooms, bathrooms and price grow with area; casas have more land than flats.
    log_area = np.log(frame["net_usable_area"])
    assert np.corrcoef(log_area, frame["n_rooms"])[0, 1] > 0.4
    assert np.corrcoef(log_area, frame["n_bathroom"])[0, 1] > 0.4
    assert np.corrcoef(log_area, np.log(frame["price"]))[0, 1] > 0.8
    ratio = (frame["net_area"] / frame["net_usable_area"]).groupby(frame["type"]).median()
    assert ratio["casa"] > 1.5 > ratio["departamento"]
    assert not frame.duplicated().any()


def test_a_model_can_learn_the_price():
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import r2_score

    def encode(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.get_dummies(frame[list(FEATURES)], dtype=float)

    train, test = generate_frame(3000, 1), generate_frame(800, 2)
    x_train = encode(train)
    x_test = encode(test).reindex(columns=x_train.columns, fill_value=0.0)
    model = HistGradientBoostingRegressor(max_iter=150, random_state=0)
    model.fit(x_train, np.log(train["price"]))
    assert r2_score(test["price"], np.exp(model.predict(x_test))) > 0.8


def test_injected_defects_have_the_planned_counts():
    frame = generate_frame(1000, 4, defect_share=0.07)
    counts = defect_counts(1000, 0.07)
    assert set(counts) == set(DEFECT_KINDS) and all(n == 10 for n in counts.values())
    assert (frame["price"] == 0).sum() == counts["zero_price"]
    assert frame["price"].between(1, 999).sum() == counts["tiny_price"]
    assert ((frame["net_area"] == 0) & (frame["net_usable_area"] == 0)).sum() == counts["zero_area"]
    assert (frame["net_usable_area"] > frame["net_area"]).sum() == counts["usable_exceeds_total"]
    assert (frame["n_rooms"] == 55).sum() == counts["too_many_rooms"]
    assert (frame["n_bathroom"] == 55).sum() == counts["too_many_bathrooms"]
    assert frame.duplicated().sum() == counts["duplicate"]
    assert frame.dtypes.equals(generate_frame(10, 4).dtypes)


def test_defects_are_off_by_default_and_bad_arguments_are_refused():
    frame = generate_frame(1000, 4)
    assert (frame["price"] >= 1000).all() and not frame.duplicated().any()
    with pytest.raises(ValueError, match="defect_share"):
        generate_frame(10, 1, defect_share=1.5)
    with pytest.raises(ValueError, match="n_rows"):
        generate_frame(-1, 1)
