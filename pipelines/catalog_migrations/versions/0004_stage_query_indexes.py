"""Indexes shaped like the stages' queries: pending and accepted images in sha256 order straight from an
index, and each image's sources read from an index alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The composite indexes serve every lookup the single-column ones did (a leading-column prefix).
    op.create_index("ix_images_status_sha256", "images", ["status", "sha256"])
    op.drop_index("ix_images_status", table_name="images")
    op.create_index("ix_sightings_image_sha256_source", "sightings", ["image_sha256", "source"])
    op.drop_index("ix_sightings_image_sha256", table_name="sightings")


def downgrade() -> None:
    op.create_index("ix_sightings_image_sha256", "sightings", ["image_sha256"])
    op.drop_index("ix_sightings_image_sha256_source", table_name="sightings")
    op.create_index("ix_images_status", "images", ["status"])
    op.drop_index("ix_images_status_sha256", table_name="images")
