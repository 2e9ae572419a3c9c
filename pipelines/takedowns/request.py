"""What a takedown names and which images that is: a photo by its source and source id, its page URL, its
author, or its bytes' sha256. One kind of name per request, so what a takedown covers is never in doubt."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from sqlalchemy import func, or_, select

from pipelines.catalog import Catalog, Image, Sighting

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TakedownRequest:
    """Who asks to remove which photos, and why."""

    reason: str
    requested_by: str
    source: str | None = None
    source_id: str | None = None
    page_url: str | None = None
    author: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.reason.strip() or not self.requested_by.strip():
            raise ValueError("a takedown needs a reason and the name of who asked for it")
        named = [kind for kind, value in self.selector_parts().items() if value]
        if (self.source is None) != (self.source_id is None):
            raise ValueError("a photo named by its source needs both the source and the source id")
        if len({"source" if kind == "source_id" else kind for kind in named}) != 1:
            raise ValueError(
                "name the photos one way: source and source id, page URL, author, or sha256 (got "
                f"{', '.join(named) or 'nothing'})"
            )
        if self.sha256 is not None and not SHA256_HEX.fullmatch(self.sha256):
            raise ValueError(f"not a sha256 (64 lowercase hex digits): {self.sha256!r}")

    def selector_parts(self) -> dict[str, str | None]:
        return {
            "source": self.source,
            "source_id": self.source_id,
            "page_url": self.page_url,
            "author": self.author,
            "sha256": self.sha256,
        }

    @property
    def selector(self) -> dict[str, str]:
        """What the request names, as stored with the takedown and shown in its report."""
        return {kind: value for kind, value in self.selector_parts().items() if value}

    @property
    def takedown_id(self) -> str:
        """Derived from what is named alone, so asking twice is one takedown (and one report)."""
        digest = hashlib.sha256(json.dumps(self.selector, sort_keys=True).encode()).hexdigest()
        return f"td-{digest[:12]}"

    def describe(self) -> str:
        return ", ".join(f"{kind} {value!r}" for kind, value in self.selector.items())


def matching_images(catalog: Catalog, request: TakedownRequest) -> list[str]:
    """The sha256 of every catalog image the request names, sorted; empty when it names nothing known."""
    if request.sha256:
        query = select(Image.sha256).where(Image.sha256 == request.sha256)
    elif request.source:
        query = select(Sighting.image_sha256).where(
            Sighting.source == request.source, Sighting.source_id == request.source_id
        )
    elif request.page_url:
        query = select(Sighting.image_sha256).where(
            or_(Sighting.page_url == request.page_url, Sighting.url == request.page_url)
        )
    else:
        wanted = (request.author or "").strip().lower()
        query = select(Sighting.image_sha256).where(
            or_(func.lower(Sighting.author) == wanted, func.lower(Sighting.author_url) == wanted)
        )
    with catalog.session() as session:
        return sorted(set(session.scalars(query)))
