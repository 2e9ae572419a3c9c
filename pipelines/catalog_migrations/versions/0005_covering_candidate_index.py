"""Images by status in sha256 order with what the stitch reads of each (raw key, format, perceptual hash,
first sighting) in the index itself: at a million accepted images, reading each row from the table in index
order cost a third of the stitch's candidate query. The pending-image query reads the same index's prefix.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CANDIDATE_COLUMNS = ["status", "sha256", "raw_key", "format", "phash", "first_seen_at"]


def upgrade() -> None:
    op.create_index("ix_images_status_sha256_candidate", "images", CANDIDATE_COLUMNS)
    op.drop_index("ix_images_status_sha256", table_name="images")


def downgrade() -> None:
    op.create_index("ix_images_status_sha256", "images", ["status", "sha256"])
    op.drop_index("ix_images_status_sha256_candidate", table_name="images")
