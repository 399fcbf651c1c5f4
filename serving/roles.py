"""Who may do what: the one table mapping API-key roles to the capabilities they grant.

The proxy asks `role_allows(record.role, Capability.X)` before each endpoint; the CLI validates a
role name with `parse_role`. Adding an endpoint means adding a capability here and granting it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    PREDICT = "predict"
    TRAIN = "train"
    ADMIN = "admin"


class Capability(StrEnum):
    PREDICT = "predict"  # POST /predict
    TRAIN = "train"  # POST /train
    JOB_STATUS = "job_status"  # GET /job_status/{id}
    BEST_MODEL = "best_model"  # POST /best_model
    MODEL_STATUS = "model_status"  # served versions, aliases and their history
    PROMOTE = "promote"  # move the champion/challenger alias
    KEYS = "keys"  # create, list and revoke API keys
    MONITORING = "monitoring"  # POST /monitoring/run: a drift and live-error run now
    MODEL_RULES = "model_rules"  # GET /model_rules: what a row may hold (the /ui form)
    RECENT_JOBS = "recent_jobs"  # GET /jobs: every key's recent training jobs (/ui/ops)
    RQ_DASHBOARD = "rq_dashboard"  # the RQ dashboard mounted at /rq (queues, workers, jobs)
    COMPARABLES = "comparables"  # /predict's comparables: the training listings themselves
    FEEDBACK = "feedback"  # POST /feedback: observed prices (ground truth)


ROLES: tuple[str, ...] = tuple(role.value for role in Role)
CAPABILITIES: tuple[str, ...] = tuple(capability.value for capability in Capability)

ROLE_CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.PREDICT: frozenset({Capability.PREDICT, Capability.MODEL_RULES}),
    Role.TRAIN: frozenset({Capability.PREDICT, Capability.MODEL_RULES, Capability.TRAIN,
                           Capability.JOB_STATUS, Capability.FEEDBACK}),
    Role.ADMIN: frozenset(Capability),
}


class UnknownRole(ValueError):
    """A role name that is not in the role table."""

    def __init__(self, role: str) -> None:
        super().__init__(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
        self.role = role


def parse_role(role: str) -> Role:
    """The Role named `role` (case and surrounding spaces ignored); UnknownRole otherwise."""
    try:
        return Role(role.strip().lower())
    except ValueError:
        raise UnknownRole(role) from None


def role_allows(role: str, capability: str) -> bool:
    """Whether keys of `role` may use `capability`.

    An unknown role (say, a record written by a newer version) grants nothing: fail closed.
    An unknown capability is a programming error in the caller and raises ValueError.
    """
    try:
        wanted = Capability(capability)
    except ValueError:
        raise ValueError(
            f"unknown capability {capability!r}: expected one of {', '.join(CAPABILITIES)}"
        ) from None
    try:
        granted = ROLE_CAPABILITIES[Role(role)]
    except ValueError:
        return False
    return wanted in granted

