"""Initial catalog: images, sightings, quality results, dataset versions and members.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("raw_key", sa.String(255), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("phash", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reject_reasons", sa.JSON()),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_images_status", "images", ["status"])
    op.create_table(
        "sightings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(512), nullable=False),
        sa.Column("image_sha256", sa.String(64), sa.ForeignKey("images.sha256"), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("page_url", sa.Text()),
        sa.Column("author", sa.String(255)),
        sa.Column("author_url", sa.Text()),
        sa.Column("license", sa.String(128)),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.UniqueConstraint("source", "source_id", name="uq_sightings_source_id"),
    )
    op.create_index("ix_sightings_image_sha256", "sightings", ["image_sha256"])
    op.create_table(
        "quality_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("image_sha256", sa.String(64), sa.ForeignKey("images.sha256"), nullable=False),
        sa.Column("check", sa.String(128), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("observed", sa.Text()),
        sa.UniqueConstraint("run_id", "image_sha256", "check", name="uq_quality_run_image_check"),
    )
    op.create_index("ix_quality_results_run_id", "quality_results", ["run_id"])
    op.create_index("ix_quality_results_image_sha256", "quality_results", ["image_sha256"])
    op.create_table(
        "dataset_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("manifest_key", sa.String(255), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dataset_members",
        sa.Column("version", sa.String(64), sa.ForeignKey("dataset_versions.version"), primary_key=True),
        sa.Column("image_sha256", sa.String(64), sa.ForeignKey("images.sha256"), primary_key=True),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("shard", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    for table in ("dataset_members", "dataset_versions", "quality_results", "sightings", "images"):
        op.drop_table(table)
