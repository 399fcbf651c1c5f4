"""The role table: which role may call which capability."""

from __future__ import annotations

import pytest

from serving.roles import CAPABILITIES, ROLES, Capability, UnknownRole, parse_role, role_allows


def test_predict_role_may_only_predict_and_read_the_rules() -> None:
    allowed = {c for c in CAPABILITIES if role_allows("predict", c)}
    assert allowed == {"predict", "model_rules"}


def test_train_role_may_predict_train_poll_jobs_and_send_feedback() -> None:
    allowed = {c for c in CAPABILITIES if role_allows("train", c)}
    assert allowed == {"predict", "model_rules", "train", "job_status", "feedback"}


def test_admin_role_may_do_everything() -> None:
    assert all(role_allows("admin", c) for c in CAPABILITIES)
    assert {"best_model", "promote", "keys", "recent_jobs", "rq_dashboard", "feedback"} <= set(CAPABILITIES)


def test_unknown_role_is_granted_nothing() -> None:
    assert not any(role_allows("root", c) for c in CAPABILITIES)
    assert not role_allows("", Capability.PREDICT)


def test_unknown_capability_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown capability 'delete_everything'"):
        role_allows("admin", "delete_everything")


def test_parse_role_accepts_case_and_spaces_and_names_the_choices() -> None:
    assert parse_role(" Admin ") == "admin"
    with pytest.raises(UnknownRole) as caught:
        parse_role("superuser")
    message = str(caught.value)
    assert "'superuser'" in message and all(role in message for role in ROLES)
