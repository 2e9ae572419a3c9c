"""The quality report at the size of a real batch: 100,000 rejected images still give a small page with the
summary first and a capped number of cards per reason, and `rejected.json` beside it lists every one of
them with its reasons; text from sources is markup on neither."""

from __future__ import annotations

import hashlib
import html
import io
import json
import re

import pandas as pd
from PIL import Image

from pipelines.quality.facts import TABLE_COLUMNS
from pipelines.quality.report import CARDS_PER_GROUP, write_report
from pipelines.quality.suites import source_table
from pipelines.quality.verdicts import BatchCheck, CheckOutcome, ImageVerdict
from pipelines.storage import FileStore

SOURCES = ("unsplash", "flickr", "web")
MORE = re.compile(r'and (\d+) more — every rejected image with its reasons is in <a href="rejected.json">')


def failed(check: str, label: str, reason: str) -> CheckOutcome:
    return CheckOutcome(check=check, label=label, passed=False, observed=None, reason=reason)


PASSED_LICENSE = CheckOutcome(check="license", label="license not allowed", passed=True, observed="CC-BY-2.0")
NOT_DECODABLE = failed("decodes", "not decodable", "not decodable: cannot identify image file")


def synthetic_batch(rejects: int, accepted: int = 10) -> tuple[pd.DataFrame, dict[str, ImageVerdict]]:
    """`rejects` undecodable images, none of whose bytes are needed, with the reasons spread so that each
    group's size is known: every even number is not decodable, every fifth has a license outside the
    allow-list (so every tenth has both reasons), the other odd ones are exact duplicates. Then `accepted`
    images that must appear nowhere among the rejects. Rows are not in sha256 order."""
    rows, verdicts = [], {}
    for number in range(rejects + accepted):
        sha256 = hashlib.sha256(str(number).encode()).hexdigest()
        rejected = number < rejects
        outcomes = [NOT_DECODABLE if rejected and number % 2 == 0 else PASSED_LICENSE]
        if rejected and number % 5 == 0:
            outcomes.append(failed("license", "license not allowed", "license not allowed: All Rights Reserved"))
        if rejected and number % 2 == 1 and number % 5 != 0:
            outcomes.append(failed("duplicate", "exact duplicate", f"exact duplicate of {sha256[-12:]}"))
        verdicts[sha256] = ImageVerdict(sha256, tuple(outcomes))
        source = SOURCES[number % len(SOURCES)]
        rows.append(
            {
                "sha256": sha256,
                "raw_key": f"raw/{sha256[:2]}/{sha256}.jpg",
                "first_seen_at": "2026-01-01T00:00:00+00:00",
                "sources": f"{source},web" if number % 7 == 0 and source != "web" else source,
                "license": "CC-BY-2.0",
                "license_allowed": True,
                "decodes": not rejected,
                "decode_error": "cannot identify image file" if rejected else None,
                "byte_size": 1000,
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), verdicts


def rejected_groups(page: str) -> dict[str, tuple[int, int, int]]:
    """Each reason group of the page, in page order: (images in it, cards shown, images its "and N more" line
    leaves to rejected.json)."""
    section = page[page.index("<h2>Rejected images</h2>") : page.index("<h2>Accepted images</h2>")]
    groups = {}
    for group in section.split("<h3>")[1:]:
        heading = re.match(r"(.*) \((\d+)\)</h3>", group)
        assert heading, group[:200]
        more = MORE.search(group)
        groups[heading[1]] = (int(heading[2]), group.count('class="card"'), int(more[1]) if more else 0)
    return groups


def report(store: FileStore, prefix: str, table: pd.DataFrame, verdicts: dict[str, ImageVerdict]) -> str:
    """Write the report of `table` under `prefix` as validation would; the page."""
    rejected = sum(not verdict.accepted for verdict in verdicts.values())
    summary = {
        "run_id": prefix.strip("/"),
        "images": len(verdicts),
        "accepted": len(verdicts) - rejected,
        "rejected": rejected,
        "by_reason": {"exact duplicate": 1, "license not allowed": 1, "not decodable": 1},
        "batch_failures": [],
    }
    checks = [BatchCheck("decodable_share", "mostly undecodable", "a source that stopped sending photos", True)]
    write_report(
        store,
        prefix,
        summary=summary,
        table=table,
        verdicts=verdicts,
        sources=source_table(table, verdicts),
        checks=checks,
        row_validation={"results": []},
        batch_validation={"results": []},
    )
    return store.get(f"{prefix}index.html").decode("utf-8")


def test_a_hundred_thousand_rejects_give_a_small_page_and_a_complete_list(store: FileStore) -> None:
    table, verdicts = synthetic_batch(100_000)
    page = report(store, "reports/quality/big/", table, verdicts)

    assert len(page.encode("utf-8")) < 2_000_000
    assert (
        page.index("<h2>Summary</h2>")
        < page.index("<h2>Batch expectations</h2>")
        < page.index("<h2>Rejected images</h2>")
    )
    groups = rejected_groups(page)
    expected = {"not decodable": 50_000, "exact duplicate": 40_000, "license not allowed": 20_000}
    assert list(groups) == list(expected), "largest group first"
    assert groups == {label: (count, CARDS_PER_GROUP, count - CARDS_PER_GROUP) for label, count in expected.items()}
    assert page.count('<a href="rejected.json">') == len(expected) + 1, "each group and the details link to it"

    listed = json.loads(store.get("reports/quality/big/rejected.json"))
    rejected = sorted(sha256 for sha256, verdict in verdicts.items() if not verdict.accepted)
    assert [image["sha256"] for image in listed] == rejected, "every reject once, in sha256 order"
    by_sha256 = {image["sha256"]: image for image in listed}
    for sha256 in rejected[:: len(rejected) // 50]:
        row = table.loc[table["sha256"] == sha256].iloc[0]
        assert by_sha256[sha256] == {
            "sha256": sha256,
            "raw_key": row["raw_key"],
            "sources": row["sources"].split(","),
            "license": "CC-BY-2.0",
            "reasons": verdicts[sha256].reasons,
            "labels": verdicts[sha256].labels,
        }
    both = by_sha256[hashlib.sha256(b"0").hexdigest()]
    assert both["sources"] == ["unsplash", "web"]
    assert both["reasons"] == ["not decodable: cannot identify image file", "license not allowed: All Rights Reserved"]


def test_the_page_does_not_grow_with_the_number_of_rejects(store: FileStore) -> None:
    small = report(store, "reports/quality/small/", *synthetic_batch(1_000))
    large = report(store, "reports/quality/large/", *synthetic_batch(100_000))
    # Same groups, same number of cards: only the counts' digits and the run id differ.
    assert abs(len(large) - len(small)) < 100


def test_text_from_sources_is_escaped_on_the_page_and_kept_as_it_was_in_the_list(store: FileStore) -> None:
    hostile = '<img src=x onerror="alert(1)">'
    photo = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(photo, format="PNG")
    sha256 = hashlib.sha256(photo.getvalue()).hexdigest()
    store.put(f"raw/{sha256}.png", photo.getvalue())
    table = pd.DataFrame(
        [
            {
                "sha256": sha256,
                "raw_key": f"raw/{sha256}.png",
                "sources": f"<b>evil</b>,{hostile}",
                "license": hostile,
                "decodes": True,
            }
        ],
        columns=list(TABLE_COLUMNS),
    )
    label = "<i>odd label</i>"
    verdicts = {sha256: ImageVerdict(sha256, (failed("license", label, f"license not allowed: {hostile}"),))}

    page = report(store, "reports/quality/hostile/", table, verdicts)

    assert hostile not in page and "<b>evil</b>" not in page and label not in page
    assert "&lt;b&gt;evil&lt;/b&gt;" in page and "&lt;i&gt;odd label&lt;/i&gt;" in page
    assert "license not allowed: &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert page.count("data:image/jpeg;base64,") == 1, "a reject that decodes has its thumbnail"
    assert rejected_groups(page) == {html.escape(label): (1, 1, 0)}, "a group within the cap needs no pointer"
    assert json.loads(store.get("reports/quality/hostile/rejected.json")) == [
        {
            "sha256": sha256,
            "raw_key": f"raw/{sha256}.png",
            "sources": ["<b>evil</b>", hostile],
            "license": hostile,
            "reasons": [f"license not allowed: {hostile}"],
            "labels": [label],
        }
    ]
