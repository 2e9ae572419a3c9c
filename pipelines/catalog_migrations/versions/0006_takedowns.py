"""Takedowns and the images they withdrew: a withdrawn image keeps its row and sightings as a tombstone, so
the same bytes or the same source id are refused at the next ingestion. Dataset members are indexed by image
too, so a takedown finds the versions that hold an image without reading every membership.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "takedowns",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "withdrawals",
        sa.Column("takedown_id", sa.String(64), sa.ForeignKey("takedowns.id"), primary_key=True),
        sa.Column("image_sha256", sa.String(64), sa.ForeignKey("images.sha256"), primary_key=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_withdrawals_image_sha256", "withdrawals", ["image_sha256"])
    op.create_index("ix_dataset_members_image_sha256", "dataset_members", ["image_sha256"])


def downgrade() -> None:
    op.drop_index("ix_dataset_members_image_sha256", table_name="dataset_members")
    op.drop_index("ix_withdrawals_image_sha256", table_name="withdrawals")
    op.drop_table("withdrawals")
    op.drop_table("takedowns")
