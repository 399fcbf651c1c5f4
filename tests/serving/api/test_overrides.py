"""Hydra overrides written from request values parse back to exactly those values."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.api.overrides import (
    UnsafeOverrideValue,
    hydra_override,
    join_overrides,
    split_overrides,
)

PARSER = OverridesParser.create()


def _round_trip(value: object) -> object:
    """Write one override among others, split it as the pipeline does, parse it as Hydra does."""
    written = join_overrides(["a=1", hydra_override("data.train_path", value), "b=2"])
    tokens = split_overrides(written)
    assert len(tokens) == 3
    return PARSER.parse_override(tokens[1]).value()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=40)
       .filter(lambda text: "${" not in text))
def test_any_printable_string_survives_both_parsers(text: str) -> None:
    parsed = _round_trip(text)
    assert type(parsed) is str and parsed == text


@pytest.mark.parametrize("value", [0.05, 150, -3, 1e-07, 2.5e20, True, False, None, "150", "true",
                                   "null", "1e5", "", "a b", "it's", 'say "hi"', "back\\",
                                   "x\\'y", "absolute_error", "sklearn.ensemble"])
def test_scalars_keep_their_type_and_value(value: object) -> None:
    parsed = _round_trip(value)
    assert type(parsed) is type(value) and parsed == value


def test_plain_words_stay_readable() -> None:
    assert hydra_override("model.params.loss", "absolute_error") == "model.params.loss=absolute_error"
    assert join_overrides(["experiment_name=Property-Friends-Experiment", "data=csv"]) == (
        "experiment_name=Property-Friends-Experiment data=csv")


@pytest.mark.parametrize("value", ["${oc.env:API_KEY}", "x${y}", "line\nbreak", "tab\there",
                                   float("nan"), float("inf"), {"a": 1}, [1], object()])
def test_unsafe_values_are_refused(value: object) -> None:
    with pytest.raises(UnsafeOverrideValue):
        hydra_override("k", value)


def test_force_add_prefix() -> None:
    assert hydra_override("model.params.subsample", 0.8, force_add=True) == (
        "++model.params.subsample=0.8")
