"""A dataset version's card: what anyone about to train on it, share it or answer for it asks first. Where
its images came from and under what licenses, the credit that Creative Commons BY licenses require for each
of them, what the quality stage found, how it is split, and what it cannot be trusted for.

`publish` writes the card just before the manifest (`datasets/<version>/card.md` for people, `card.json`
for programs), so every version published since cards exist has one; `colorflow dataset card <version>`
writes one for an older version, from the catalog as it is now.

Counts come from aggregate queries over the version's members (the catalog's `dataset_members`, keyed by
version first). The attribution list, one line per sighting under a license that requires credit, is the
only part that grows with the version: it streams from the catalog into both files a batch at a time, so
a million members never sit in memory."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select, case, distinct, exists, func, select
from sqlalchemy.orm import Session

from pipelines.catalog import Catalog, DatasetMember, Image, QualityResult, Sighting, utcnow
from pipelines.licenses import license_label, requires_attribution
from pipelines.stitch.layout import card_keys, manifest_key
from pipelines.stitch.params import SPLITS
from pipelines.storage import ObjectStore

ATTRIBUTION_BATCH_ROWS = 10_000  # sightings read from the catalog, and written to the card, at a time
# Colorizers learn what colors things have from hundreds of thousands of photos (ImageNet's 1.3 million in
# the papers); one trained on fewer than this mostly learns the photos it saw.
SMALL_DATASET = 10_000
# One source supplying more than this share of the images decides what the model sees as normal.
DOMINANT_SOURCE_SHARE = 0.5
EMPTY_SPLIT_MEANS = {
    "train": "there is nothing to train on",
    "val": "training reports no validation metrics",
    "test": "models trained on it are measured on the val split instead, which training reported on",
}
# Where card.json's facts end and its attribution list begins: the list is streamed in last.
ATTRIBUTIONS_START = b',\n  "attributions": ['
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def write_card(store: ObjectStore, catalog: Catalog, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the card of a version whose members are in the catalog; its facts (card.json without the
    attribution list) are returned. Rewriting a card replaces it whole."""
    facts = card_facts(catalog, manifest)
    keys = card_keys(manifest["version"])
    with store.open_write(keys["card.md"]) as markdown, store.open_write(keys["card.json"]) as document:
        markdown.write(render_markdown(facts).encode())
        # card.json is the facts with the attribution list streamed in as their last key.
        document.write(json.dumps(facts, indent=2).removesuffix("\n}").encode() + ATTRIBUTIONS_START)
        written = 0
        for batch in stream_attributions(catalog, manifest["version"], facts["licenses"]):
            markdown.write("".join(attribution_line(entry) + "\n" for entry in batch).encode())
            entries = ",\n    ".join(json.dumps(entry) for entry in batch)
            document.write(((",\n    " if written else "\n    ") + entries).encode())
            written += len(batch)
        if written == 0:
            markdown.write(b"No image of this version is under a license that requires credit.\n")
        document.write(b"\n  ]\n}\n" if written else b"]\n}\n")
    return facts


def load_card_facts(store: ObjectStore, version: str) -> dict[str, Any]:
    """A version's card.json without its attribution list, read from the head of the file only: the facts
    come first (`write_card`), so learning them never reads a million members' credits. `ObjectNotFound` for
    a version published before cards existed."""
    head = b""
    with store.open_read(card_keys(version)["card.json"]) as card:
        while ATTRIBUTIONS_START not in head:
            block = card.read(1 << 16)
            if not block:
                raise ValueError(f"the card of dataset {version} is cut short: it has no attribution list")
            head += block
    return json.loads(head.split(ATTRIBUTIONS_START, 1)[0] + b"\n}")


def load_card(store: ObjectStore, version: str) -> dict[str, Any]:
    """A version's card.json; `ObjectNotFound` for a version published before cards existed."""
    return json.loads(store.get(card_keys(version)["card.json"]))


def card_facts(catalog: Catalog, manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything the card says but the attribution list, read from the catalog and the manifest."""
    version = manifest["version"]
    params = manifest["params"]
    with catalog.session() as session:
        by_split = _members_of(version, DatasetMember.split, func.count()).group_by(DatasetMember.split)
        splits = dict(session.execute(by_split).tuples().all())
        sources = {
            source: {"images": images, "sightings": sightings, "without_license": unlicensed}
            for source, images, sightings, unlicensed in session.execute(
                _sightings_of(
                    version, Sighting.source, *_image_and_sighting_counts(), _count_if(Sighting.license.is_(None))
                )
                .group_by(Sighting.source)
                .order_by(Sighting.source)
            )
        }
        licenses = {
            license_label(term, None): {"images": images, "sightings": sightings}
            for term, images, sightings in session.execute(
                _sightings_of(version, Sighting.license, *_image_and_sighting_counts())
                .group_by(Sighting.license)
                .order_by(Sighting.license)
            )
        }
        licensed_sighting = exists().where(
            Sighting.image_sha256 == DatasetMember.image_sha256, Sighting.license.is_not(None)
        )
        unlicensed_images = session.scalar(_members_of(version, func.count()).where(~licensed_sighting))
        checks: dict[str, dict[str, int]] = {}
        for check, passed, count in session.execute(
            select(QualityResult.check, QualityResult.passed, func.count(distinct(QualityResult.image_sha256)))
            .join(DatasetMember, DatasetMember.image_sha256 == QualityResult.image_sha256)
            .where(DatasetMember.version == version)
            .group_by(QualityResult.check, QualityResult.passed)
            .order_by(QualityResult.check)
        ):
            checks.setdefault(check, {"passed": 0, "failed": 0})["passed" if passed else "failed"] = count
        images = _image_facts(session, version, params["load_size"])
    for label, counts in licenses.items():
        counts["attribution_required"] = requires_attribution(label)
    facts = {
        "version": version,
        "manifest": manifest_key(version),
        "published_at": manifest["created_at"],
        "written_at": utcnow().isoformat(),
        "samples": sum(splits.values()),
        "splits": {split: splits.get(split, 0) for split in SPLITS},
        "shards": len(manifest["shards"]),
        "load_size": params["load_size"],
        "encoding": manifest["encoding"]["name"],
        "filters": {name: params.get(name) for name in ("sources", "since", "until")},
        "source_mix": manifest["source_mix"],
        "sources": sources,
        "licenses": licenses,
        "images_without_license": unlicensed_images,
        "credits_required": sum(term["sightings"] for term in licenses.values() if term["attribution_required"]),
        "quality": {
            "checks": checks,
            "duplicates_dropped": manifest["duplicates_dropped"],
            "left_out": _left_out(manifest["failures"]),
            "images": images,
        },
    }
    facts["limitations"] = limitations(facts)
    return facts


def limitations(facts: dict[str, Any]) -> list[str]:
    """What the version cannot be trusted for, worked out from its own numbers."""
    found = []
    samples = facts["samples"]
    if samples < SMALL_DATASET:
        found.append(
            f"Small: {samples} images. A colorizer learns what colors things have from hundreds of thousands of"
            " photos; one trained on this many mostly learns these photos."
        )
    for split, count in facts["splits"].items():
        if count == 0:
            found.append(f"The {split} split is empty: {EMPTY_SPLIT_MEANS[split]}.")
    mix = facts["source_mix"]
    if len(mix) == 1:
        found.append(
            f"One source ({next(iter(mix))}) supplies every image: its subjects and style are all a model sees."
        )
    elif mix:
        leader = max(mix, key=mix.get)
        share = mix[leader] / max(sum(mix.values()), 1)
        if share > DOMINANT_SOURCE_SHARE:
            found.append(f"Imbalanced sources: {leader} supplies {share:.0%} of the images.")
    if facts["images_without_license"]:
        unlicensed = sorted(source for source, counts in facts["sources"].items() if counts["without_license"])
        found.append(
            f"No source recorded a license for {facts['images_without_license']} of the images (sightings without"
            f" one come from {', '.join(unlicensed)}): they were accepted from sources the operator trusts"
            " without one, so check their terms before sharing them or samples made from them."
        )
    smaller = facts["quality"]["images"]["smaller_than_load_size"]
    if smaller:
        found.append(
            f"{smaller} images are smaller than the stored {facts['load_size']} px square and were enlarged:"
            " their samples are softer than real photos."
        )
    found.append(
        "No subject labels: the catalog knows where each image came from, not what it shows, so the balance"
        " of subjects (people, landscapes, objects) is unknown."
    )
    return found


def stream_attributions(catalog: Catalog, version: str, licenses: dict[str, dict[str, Any]]) -> Iterator[list[dict]]:
    """Every sighting of a member under a license that requires credit, in image then source order, a batch
    at a time. An image found by two sources has a line for each: the same bytes reached the lake under
    both terms."""
    terms = [term for term, counts in licenses.items() if counts["attribution_required"]]
    if not terms:
        return
    columns = (
        Sighting.image_sha256,
        Sighting.source,
        Sighting.source_id,
        Sighting.author,
        Sighting.author_url,
        func.coalesce(Sighting.page_url, Sighting.url),
        Sighting.license,
        Sighting.license_text,
    )
    names = ("sha256", "source", "source_id", "author", "author_url", "link", "license", "license_text")
    query = (
        _sightings_of(version, *columns)
        .where(Sighting.license.in_(terms))
        .order_by(Sighting.image_sha256, Sighting.source, Sighting.source_id)
    )
    with catalog.session() as session:
        for rows in session.execute(query.execution_options(yield_per=ATTRIBUTION_BATCH_ROWS)).partitions():
            yield [dict(zip(names, row, strict=True)) for row in rows]


def attribution_line(entry: dict[str, Any]) -> str:
    """One credit as Creative Commons asks for it: title (the source's id), author, source, license."""
    author = _escape(entry["author"] or "unknown author")
    if entry["author_url"]:
        author = f"[{author}](<{entry['author_url']}>)"
    return (
        f"- {_escape(entry['source'])} {_escape(entry['source_id'])} by {author}, <{entry['link']}>,"
        f" {_escape(license_label(entry['license'], entry['license_text']))} (image `{entry['sha256'][:12]}`)"
    )


def render_markdown(facts: dict[str, Any]) -> str:
    """Everything in card.md up to the attribution list, which the writer streams after it."""
    quality, images = facts["quality"], facts["quality"]["images"]
    filters = facts["filters"]
    chosen = ", ".join(filters["sources"] or []) or "every source"
    formats = ", ".join(f"{name} {count}" for name, count in images["formats"].items()) or "none"
    lines = [
        f"# Dataset card: {facts['version']}",
        "",
        f"{facts['samples']} photos as {facts['load_size']} px squares of 8-bit CIE Lab (`{facts['encoding']}`)"
        f" in {facts['shards']} WebDataset shards, published {facts['published_at']} (card written"
        f" {facts['written_at']}). Manifest: `{facts['manifest']}`; the same facts for programs: `card.json`.",
        f"Chosen from {chosen}, fetched from {filters['since'] or 'the start'} until {filters['until'] or 'now'}.",
        "",
        "## Counts",
        "",
        "| | images |",
        "|---|---:|",
        f"| samples | {facts['samples']} |",
        *(f"| {split} split | {count} |" for split, count in facts["splits"].items()),
        f"| near duplicates dropped | {quality['duplicates_dropped']} |",
        f"| left out (could not be transformed) | {sum(quality['left_out'].values())} |",
        "",
        "## Sources",
        "",
        "An image found by several sources counts under each.",
        "",
        "| source | images | sightings | sightings without license |",
        "|---|---:|---:|---:|",
        *(
            f"| {_escape(source)} | {counts['images']} | {counts['sightings']} | {counts['without_license']} |"
            for source, counts in facts["sources"].items()
        ),
        "",
        "## Licenses",
        "",
        "| license | images | sightings | credit required |",
        "|---|---:|---:|---|",
        *(
            f"| {_escape(label)} | {counts['images']} | {counts['sightings']} |"
            f" {'yes' if counts['attribution_required'] else 'no'} |"
            for label, counts in facts["licenses"].items()
        ),
        "",
        "## Quality",
        "",
        "Images of this version by what each quality check said of them (an image validated more than once"
        " counts under every outcome it had).",
        "",
        "| check | passed | failed |",
        "|---|---:|---:|",
        *(
            f"| {_escape(check)} | {counts['passed']} | {counts['failed']} |"
            for check, counts in quality["checks"].items()
        ),
        "",
        f"Sizes as fetched: width {_spread(images['width'])} px, height {_spread(images['height'])} px,"
        f" {images['bytes'] / 1e6:.1f} MB in all; formats: {formats}.",
        *(f"Left out, {reason}: {count}." for reason, count in quality["left_out"].items()),
        "",
        "## Known limitations",
        "",
        *(f"- {limitation}" for limitation in facts["limitations"]),
        "",
        "## Attribution",
        "",
        f"{facts['credits_required']} sightings are under licenses that require credit (Creative Commons BY and"
        " BY-SA). Whoever shares these images, or samples made from them, credits each as below.",
        "",
    ]
    return "\n".join(lines) + "\n"


def _members_of(version: str, *columns: Any) -> Select:
    return select(*columns).select_from(DatasetMember).where(DatasetMember.version == version)


def _sightings_of(version: str, *columns: Any) -> Select:
    """Columns of the sightings of a version's members (every sighting: a source the build's filter left out
    offered the same bytes, and its terms hold for them too)."""
    return (
        select(*columns)
        .select_from(DatasetMember)
        .join(Sighting, Sighting.image_sha256 == DatasetMember.image_sha256)
        .where(DatasetMember.version == version)
    )


def _image_and_sighting_counts() -> tuple[Any, Any]:
    return func.count(distinct(Sighting.image_sha256)), func.count()


def _count_if(condition: Any) -> Any:
    return func.count(case((condition, 1)))


def _image_facts(session: Session, version: str, load_size: int) -> dict[str, Any]:
    """Sizes and formats of the members' images as fetched."""
    short_side = case((Image.width < Image.height, Image.width), else_=Image.height)

    def of_images(*columns: Any) -> Select:
        return _members_of(version, *columns).join(Image, Image.sha256 == DatasetMember.image_sha256)

    row = session.execute(
        of_images(
            func.min(Image.width),
            func.avg(Image.width),
            func.max(Image.width),
            func.min(Image.height),
            func.avg(Image.height),
            func.max(Image.height),
            func.coalesce(func.sum(Image.byte_size), 0),
            _count_if(short_side < load_size),
        )
    ).one()
    formats = session.execute(of_images(Image.format, func.count()).group_by(Image.format).order_by(Image.format))
    return {
        "width": _min_mean_max(row[0:3]),
        "height": _min_mean_max(row[3:6]),
        "bytes": int(row[6]),
        "smaller_than_load_size": row[7],
        "formats": dict(formats.tuples().all()),
    }


def _min_mean_max(values: Sequence[Any]) -> dict[str, float | None]:
    low, mean, high = values
    return {"min": low, "mean": round(float(mean), 1) if mean is not None else None, "max": high}


def _spread(values: dict[str, float | None]) -> str:
    if values["min"] is None:
        return "unknown"
    return f"{values['min']}–{values['max']} (mean {values['mean']:.0f})"


def _left_out(failures: Sequence[dict[str, str]]) -> dict[str, int]:
    """Images the shard writers left out, by the first clause of their reason (`cannot decode jpg: ...`)."""
    return dict(sorted(Counter(failure["reason"].split(":")[0] for failure in failures).items()))


def _escape(text: str) -> str:
    """Text from a source, safe inside a Markdown line or table cell."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
