"""One license vocabulary: what the services' own words mean in it. The inputs are the real tables the
services publish: Flickr's `licenses.getInfo` (2023), COCO's `licenses` array, Kaggle's license codes
(tests/captures, origins in each folder's README)."""

from __future__ import annotations

import json
import re
from xml.etree import ElementTree

import pytest

from pipelines.licenses import (
    CC0,
    DEFAULT_ALLOWED,
    KAGGLE_CODES,
    PUBLIC_DOMAIN_MARK,
    UNSPLASH,
    from_spdx,
    from_term,
    from_url,
    license_label,
    requires_attribution,
)
from tests.replay import CAPTURES, capture


def test_flickrs_table_maps_every_license_by_its_url() -> None:
    real = ElementTree.fromstring(capture("flickr/licenses_getInfo.2023-11-05.flickr-foundation.xml"))
    terms = {entry.get("name"): from_url(entry.get("url")) for entry in real.iter("license")}
    assert terms == {
        "All Rights Reserved": None,
        "Attribution License": "CC-BY-2.0",
        "Attribution-NoDerivs License": "CC-BY-ND-2.0",
        "Attribution-NonCommercial-NoDerivs License": "CC-BY-NC-ND-2.0",
        "Attribution-NonCommercial License": "CC-BY-NC-2.0",
        "Attribution-NonCommercial-ShareAlike License": "CC-BY-NC-SA-2.0",
        "Attribution-ShareAlike License": "CC-BY-SA-2.0",
        "No known copyright restrictions": PUBLIC_DOMAIN_MARK,
        "United States Government Work": PUBLIC_DOMAIN_MARK,
        "Public Domain Dedication (CC0)": CC0,
        "Public Domain Mark": PUBLIC_DOMAIN_MARK,
    }


def test_cocos_license_urls_map_like_flickrs() -> None:
    """COCO's ids 1-8 are Flickr's, but its URLs use http:// and no www (person_keypoints_val2017.json)."""
    document = json.loads(capture("coco/person_keypoints_val2017.excerpt.hybrid_learning.trimmed.json"))
    terms = {entry["id"]: from_url(entry["url"]) for entry in document["licenses"]}
    assert terms == {
        1: "CC-BY-NC-SA-2.0",
        2: "CC-BY-NC-2.0",
        3: "CC-BY-NC-ND-2.0",
        4: "CC-BY-2.0",
        5: "CC-BY-SA-2.0",
        6: "CC-BY-ND-2.0",
        7: PUBLIC_DOMAIN_MARK,
        8: PUBLIC_DOMAIN_MARK,
    }


def kaggle_documented_codes() -> list[str]:
    """The codes of Kaggle's datasets_metadata.md, from the table in tests/captures/kaggle/README.md."""
    readme = (CAPTURES / "kaggle" / "README.md").read_text()
    table = readme.split("| code |", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| (\S+) \|", table, flags=re.MULTILINE)


def test_every_documented_kaggle_code_has_a_meaning() -> None:
    codes = kaggle_documented_codes()
    assert len(codes) == 28 and "CC0-1.0" in codes and "unknown" in codes
    meanings = {code: from_spdx(code) for code in codes}
    assert meanings["CC0-1.0"] == CC0 and meanings["CC-BY-SA-4.0"] == "CC-BY-SA-4.0"
    assert meanings["CC-BY-NC-SA-3.0-IGO"] == "CC-BY-NC-SA-3.0-IGO"
    assert meanings["US-Government-Works"] == PUBLIC_DOMAIN_MARK
    assert [code for code, term in meanings.items() if term is None] == [
        code for code in codes if code in KAGGLE_CODES and KAGGLE_CODES[code] is None
    ]
    assert {meanings[code] for code in ("other", "unknown", "copyright-authors")} == {None}


@pytest.mark.parametrize(
    ("url", "term"),
    [
        ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
        ("https://creativecommons.org/licenses/by-sa/4.0/deed.en", "CC-BY-SA-4.0"),
        ("https://creativecommons.org/licenses/by/3.0/igo/", "CC-BY-3.0-IGO"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", CC0),
        ("https://www.usa.gov/government-works/", PUBLIC_DOMAIN_MARK),
        ("https://unsplash.com/license", None),
        ("", None),
        (None, None),
    ],
)
def test_urls(url: str | None, term: str | None) -> None:
    assert from_url(url) == term


@pytest.mark.parametrize(
    ("named", "term"),
    [
        ("CC0 1.0", CC0),
        ("cc0-1.0", CC0),
        ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
        ("CC BY 2.0", "CC-BY-2.0"),
        (" Unsplash ", UNSPLASH),
        ("all rights reserved", None),
        (None, None),
    ],
)
def test_operators_name_licenses_as_creative_commons_writes_them(named: str | None, term: str | None) -> None:
    assert from_term(named) == term


def test_the_default_allow_list_keeps_open_licenses_only() -> None:
    assert {CC0, PUBLIC_DOMAIN_MARK, UNSPLASH, "CC-BY-2.0", "CC-BY-SA-4.0"} <= set(DEFAULT_ALLOWED)
    assert not {term for term in DEFAULT_ALLOWED if "-NC" in term or "-ND" in term}


def test_every_cc_by_and_cc_by_sa_version_requires_credit_and_nothing_else_allowed_does() -> None:
    credited = {term for term in DEFAULT_ALLOWED if requires_attribution(term)}
    assert credited == {
        f"CC-BY{kind}-{version}" for kind in ("", "-SA") for version in ("1.0", "2.0", "2.5", "3.0", "4.0")
    }
    assert requires_attribution("CC-BY-NC-SA-2.0") and requires_attribution("CC-BY-3.0-IGO")
    assert not requires_attribution(None) and not requires_attribution("CC0-1.0")


def test_labels_keep_the_sources_words() -> None:
    assert license_label("CC-BY-2.0", "Attribution License") == "CC-BY-2.0 (Attribution License)"
    assert license_label(None, "Instagram (all rights reserved)") == "Instagram (all rights reserved)"
    assert license_label(UNSPLASH, UNSPLASH) == UNSPLASH
    assert license_label(None, None) == "none recorded"
