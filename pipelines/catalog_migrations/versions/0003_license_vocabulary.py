"""Licenses in one vocabulary: sightings keep the service's own words in `license_text`, and `license` holds
the vocabulary's term (SPDX identifiers, `Unsplash`, `public-domain-mark`; see `pipelines.licenses`).

Existing rows held the services' words in `license`; they move to `license_text`, and `license` gets the
term those words stand for. The table below is this migration's own (frozen with it): the words Colorflow's
connectors wrote before this revision.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TERMS = {
    "Unsplash License": "Unsplash",
    "CC BY 2.0": "CC-BY-2.0",
    "CC BY-SA 2.0": "CC-BY-SA-2.0",
    "CC BY-NC 2.0": "CC-BY-NC-2.0",
    "CC BY-ND 2.0": "CC-BY-ND-2.0",
    "CC BY-NC-SA 2.0": "CC-BY-NC-SA-2.0",
    "CC BY-NC-ND 2.0": "CC-BY-NC-ND-2.0",
    "CC BY 4.0": "CC-BY-4.0",
    "CC BY-SA 4.0": "CC-BY-SA-4.0",
    "CC BY-NC 4.0": "CC-BY-NC-4.0",
    "CC BY-ND 4.0": "CC-BY-ND-4.0",
    "CC BY-NC-SA 4.0": "CC-BY-NC-SA-4.0",
    "CC BY-NC-ND 4.0": "CC-BY-NC-ND-4.0",
    "CC0 1.0": "CC0-1.0",
    "CC0-1.0": "CC0-1.0",
    "CC0: Public Domain": "CC0-1.0",
    "Public Domain Mark 1.0": "public-domain-mark",
    "No known copyright restrictions": "public-domain-mark",
    "United States Government Work": "public-domain-mark",
    "Attribution License": "CC-BY-2.0",
    "Attribution-ShareAlike License": "CC-BY-SA-2.0",
    "Attribution-NonCommercial License": "CC-BY-NC-2.0",
    "Attribution-NoDerivs License": "CC-BY-ND-2.0",
    "Attribution-NonCommercial-ShareAlike License": "CC-BY-NC-SA-2.0",
    "Attribution-NonCommercial-NoDerivs License": "CC-BY-NC-ND-2.0",
}


def upgrade() -> None:
    op.add_column("sightings", sa.Column("license_text", sa.String(255)))
    sightings = sa.table("sightings", sa.column("license", sa.String), sa.column("license_text", sa.String))
    op.execute(sightings.update().values(license_text=sightings.c.license, license=None))
    for words, term in TERMS.items():
        op.execute(sightings.update().where(sightings.c.license_text == words).values(license=term))


def downgrade() -> None:
    sightings = sa.table("sightings", sa.column("license", sa.String), sa.column("license_text", sa.String))
    op.execute(sightings.update().values(license=sightings.c.license_text))
    op.drop_column("sightings", "license_text")
