"""Names that the pipeline writes into MLflow and that the API, the CLI and the registry read back.

A run or a model version is described by tags and metrics; the step that writes one and the code
that reads it must agree on its name, so every shared name is spelt here once.
"""

from __future__ import annotations

# --- run tags ----------------------------------------------------------------------------------
STEP_TAG = "valuation.step"  # which entry point made the run: one of the *_STEP values below
MODEL_TAG = "valuation.model"  # the conf/model/ group of a pipeline run
TRAIN_URI_TAG = "valuation.train_uri"
TEST_URI_TAG = "valuation.test_uri"
MODEL_URI_TAG = "valuation.model_uri"  # the logged model a run trained or scored
VALIDATED_TAG = "valuation.validated"  # "true" / "false": every evaluate threshold held
FAILED_THRESHOLDS_TAG = "valuation.failed_thresholds"  # "rmse 9000 vs 8000, ..." when not validated
REGISTERED_VERSION_TAG = "valuation.registered_version"
CHAMPION_MOVED_TAG = "valuation.champion_moved"
REGISTER_OUTCOME_TAG = "valuation.register_outcome"  # why register did what it did

MAIN_STEP = "main"
INGEST_STEP = "ingest"
TRAIN_STEP = "train"
EVALUATE_STEP = "evaluate"
REGISTER_STEP = "register"

# --- run artifacts ------------------------------------------------------------------------------
# The reference profile evaluate logs (valuation/monitoring/profile.py): aggregates of the test
# table, its predictions and the version's test figures, read by the monitoring job through the
# version's EVALUATION_RUN_ID_TAG.
PROFILE_ARTIFACT = "monitoring/reference_profile.json"
RETRAINING_REASON_TAG = "valuation.retraining_reason"  # on a run the retraining policy started

# --- model version tags (also MODEL_URI_TAG and VALIDATED_TAG) ---------------------------------
EVALUATION_RUN_ID_TAG = "valuation.evaluation_run_id"
REGISTERED_BY_TAG = "valuation.registered_by"
GIT_COMMIT_TAG = "valuation.git_commit"
MODEL_CONFIG_TAG = "valuation.model_config"

# --- registered model tags ---------------------------------------------------------------------
ALIAS_HISTORY_TAG_PREFIX = "alias_history."  # + a zero-padded sequence number: one JSON move each

# --- metrics -----------------------------------------------------------------------------------
TEST_METRIC_PREFIX = "test_"  # evaluate logs every valuation.metrics measure on the test table


def evaluation_metric(name: str) -> str:
    """The evaluation metric (and version tag) holding measure `name`, e.g. `test_rmse`."""
    return f"{TEST_METRIC_PREFIX}{name}"

