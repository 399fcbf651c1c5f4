"""The prediction cache's row key: `canonical_row` groups rows exactly as RFC 8785 canonical JSON
(the `rfc8785` library, the key's former form) does, so no two rows that RFC 8785 tells apart
share a price, and every respelling RFC 8785 treats as one row is still one key."""

from __future__ import annotations

import itertools
import random

import rfc8785

from serving.prediction.cache import canonical_row, row_digest
from tests.serving.prediction.support import synthetic_rows
from valuation.model_runtime.schema import FEATURES, NUMERIC_FEATURES


def rfc8785_form(row: dict) -> bytes:
    return rfc8785.dumps({name: row[name] for name in FEATURES})


def spellings(value: float) -> list:
    """A number as a JSON body may carry it: int when integral, float, and the string forms (which
    validation accepts as numbers but JSON, and both canonical forms, keep as strings)."""
    out: list = [value, float(value), repr(float(value)), str(value)]
    if float(value).is_integer():
        out += [int(value), str(int(value))]
    if value == 0:
        out += [-0.0, 0]
    return out


def test_the_key_groups_rows_exactly_as_rfc8785_does() -> None:
    base = synthetic_rows(6, seed=31)
    base[0]["n_rooms"], base[0]["n_bathroom"] = 6.0, 0.0
    base[1]["n_rooms"] = 6  # another row's 6 as an int
    base[2]["latitude"] = base[3]["latitude"] = -33.41  # rows apart in one feature only
    rng = random.Random(5)
    rows = []
    for row in base:
        for name in NUMERIC_FEATURES:
            for spelled in spellings(row[name]):
                variant = {**row, name: spelled}
                order = list(variant)
                rng.shuffle(order)
                rows.append({key: variant[key] for key in order})  # any key order
        rows.append({**row, "type": row["type"].upper()})  # categories are compared as sent
        rows.append({**row, "longitude": row["longitude"] + 1e-12})
        rows.append({**row, "extra": "ignored"})
    old = [rfc8785_form(row) for row in rows]
    new = [canonical_row(row) for row in rows]
    pairs = list(itertools.combinations(range(len(rows)), 2))
    assert len(pairs) > 10_000
    differ = [(rows[i], rows[j]) for i, j in pairs if (old[i] == old[j]) != (new[i] == new[j])]
    assert not differ, differ[:3]
    # The classes are not trivial: respellings do collide, and distinct rows do not.
    assert sum(old[i] == old[j] for i, j in pairs) > 100
    assert len(set(new)) > len(base) * 8


def test_six_and_six_point_zero_are_one_key_the_string_six_another() -> None:
    row = synthetic_rows(1, seed=32)[0]
    six = row_digest({**row, "n_rooms": 6})
    assert row_digest({**row, "n_rooms": 6.0}) == six
    assert row_digest(dict(reversed(list({**row, "n_rooms": 6}.items())))) == six
    assert row_digest({**row, "n_rooms": "6"}) != six
    assert row_digest({**row, "n_rooms": 7}) != six
    assert row_digest({**row, "n_bathroom": -0.0}) == row_digest({**row, "n_bathroom": 0})
    assert len(six) == 64 and int(six, 16) >= 0  # a SHA-256 in hex
