"""predictions and observations

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types of serving/prediction_store/tables.py as they were at this revision.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FEATURES = ("type", "sector", "net_usable_area", "net_area", "n_rooms", "n_bathroom",
            "latitude", "longitude")


def _features() -> list[sa.Column]:
    return [
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("sector", sa.String(128), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in FEATURES[2:]),
    ]


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("served_alias", sa.String(32), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        *_features(),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
        sa.UniqueConstraint("request_id", "row_index", "served_alias",
                            name="uq_predictions_request_row_alias"),
    )
    op.create_index("ix_predictions_created_at_model_version", "predictions",
                    ["created_at", "model_version"])
    op.create_index("ix_predictions_features", "predictions",
                    ["latitude", "longitude", "net_usable_area"])
    op.create_table(
        "observations",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("row_index", sa.Integer(), nullable=True),
        sa.Column("observed_price", sa.Float(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("prediction_id", ID, nullable=True),
        *_features(),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.id"],
                                name="fk_observations_prediction_id_predictions", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_observations"),
        sa.UniqueConstraint(*FEATURES, "kind", "observed_at", "observed_price",
                            name="uq_observations_fact"),
    )
    op.create_index("ix_observations_observed_at", "observations", ["observed_at"])
    op.create_index("ix_observations_prediction_id", "observations", ["prediction_id"])
    op.create_index("ix_observations_request_row", "observations", ["request_id", "row_index"])


def downgrade() -> None:
    op.drop_table("observations")
    op.drop_table("predictions")
