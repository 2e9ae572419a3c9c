"""The Unsplash stand-in answers as the real API, image host and dataset do, over real HTTP.

What is checked here is what a connector written against https://unsplash.com/documentation relies on:
the search schema and paging, Client-ID auth errors, the rate-limit headers and the 403 past the budget,
the download trigger, imgix-style resizing, and the Lite Dataset's column names.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from PIL import Image

from sandbox.credentials import UNSPLASH_ACCESS_KEY

AUTH = {"Authorization": f"Client-ID {UNSPLASH_ACCESS_KEY}"}
UNSPLASH_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


@pytest.fixture
def unsplash(sandbox_url: str) -> str:
    return f"{sandbox_url}/unsplash"


@pytest.fixture
def fresh_budget(sandbox_service) -> None:
    """Nothing spent before the test, and the default budget back after it, for the tests that follow."""
    sandbox_service("unsplash")


def search(unsplash: str, **params: object) -> requests.Response:
    return requests.get(f"{unsplash}/api/search/photos", params=params, headers=AUTH, timeout=30)


def stats(unsplash: str) -> dict:
    return requests.get(f"{unsplash}/_admin/stats", timeout=5).json()


def test_search_answers_the_documented_photo_schema(unsplash: str) -> None:
    answer = search(unsplash, query="cat", per_page=3)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"total", "total_pages", "results"} and body["total"] == 40 and body["total_pages"] == 14
    photo = body["results"][0]
    assert UNSPLASH_ID.match(photo["id"])
    assert datetime.fromisoformat(photo["created_at"]).utcoffset() is not None
    assert photo["width"] > 0 and photo["height"] > 0 and photo["description"] and photo["alt_description"]
    assert set(photo["urls"]) == {"raw", "full", "regular", "small", "thumb"}
    for url in photo["urls"].values():
        assert url.startswith(f"{unsplash}/images/photo-")
        assert {"ixid", "ixlib"} <= set(parse_qs(urlsplit(url).query))
    assert parse_qs(urlsplit(photo["urls"]["regular"]).query)["w"] == ["1080"]
    links = photo["links"]
    assert links["self"] == f"{unsplash}/api/photos/{photo['id']}"
    assert links["html"] == f"{unsplash}/photos/{photo['id']}"
    assert links["download_location"].startswith(f"{unsplash}/api/photos/{photo['id']}/download?ixid=")
    user = photo["user"]
    assert UNSPLASH_ID.match(user["id"]) and user["username"] and user["name"]
    assert user["links"]["html"] == f"{unsplash}/@{user['username']}"


def test_per_page_defaults_to_ten_and_is_capped_at_thirty(unsplash: str) -> None:
    assert len(search(unsplash, query="color").json()["results"]) == 10
    capped = search(unsplash, query="color", per_page=100).json()
    assert len(capped["results"]) == 30 and capped["total_pages"] == 12  # 360 photos, 30 a page
    second = search(unsplash, query="color", per_page=100, page=2).json()["results"]
    assert not {photo["id"] for photo in capped["results"]} & {photo["id"] for photo in second}
    assert search(unsplash, query="color", page=99).json()["results"] == []


def test_latest_is_newest_first_and_words_combine(unsplash: str) -> None:
    latest = search(unsplash, query="space", order_by="latest", per_page=30).json()["results"]
    times = [datetime.fromisoformat(photo["created_at"]) for photo in latest]
    assert times == sorted(times, reverse=True)
    relevant = search(unsplash, query="space", per_page=30).json()["results"]
    assert [photo["id"] for photo in relevant] != [photo["id"] for photo in latest]
    assert search(unsplash, query="space portrait").json()["total"] == 40  # only the astronaut is both
    assert search(unsplash, query="space", order_by="popular").status_code == 400
    assert search(unsplash).json() == {"errors": ["query is missing"]}


def test_requests_without_a_valid_key_get_401(unsplash: str) -> None:
    invalid = {"errors": ["OAuth error: The access token is invalid"]}
    for headers in ({}, {"Authorization": "Client-ID wrong-key"}, {"Authorization": f"Bearer {UNSPLASH_ACCESS_KEY}"}):
        answer = requests.get(f"{unsplash}/api/search/photos", params={"query": "cat"}, headers=headers, timeout=5)
        assert answer.status_code == 401 and answer.json() == invalid
    # The API also takes the key as a query parameter.
    as_parameter = {"query": "cat", "client_id": UNSPLASH_ACCESS_KEY}
    assert requests.get(f"{unsplash}/api/search/photos", params=as_parameter, timeout=5).status_code == 200


def test_every_answer_reports_the_budget_and_403_comes_past_it(unsplash: str, fresh_budget: None) -> None:
    first = search(unsplash, query="cat")
    assert first.headers["X-Ratelimit-Limit"] == "5000" and first.headers["X-Ratelimit-Remaining"] == "4999"
    missing = requests.get(f"{unsplash}/api/photos/nonexistent1", headers=AUTH, timeout=5)
    assert missing.status_code == 404 and missing.headers["X-Ratelimit-Remaining"] == "4998"

    requests.post(f"{unsplash}/_admin/reset", timeout=5).raise_for_status()
    requests.post(f"{unsplash}/_admin/config", json={"hourly_limit": 2}, timeout=5).raise_for_status()
    assert [search(unsplash, query="cat").headers["X-Ratelimit-Remaining"] for _ in range(2)] == ["1", "0"]
    refused = search(unsplash, query="cat")
    assert refused.status_code == 403 and refused.text == "Rate Limit Exceeded"
    assert refused.headers["Content-Type"].startswith("text/plain")
    assert refused.headers["X-Ratelimit-Limit"] == "2" and refused.headers["X-Ratelimit-Remaining"] == "0"
    as_429 = {"hourly_limit": 0, "refusal_status": 429}
    requests.post(f"{unsplash}/_admin/config", json=as_429, timeout=5).raise_for_status()
    assert search(unsplash, query="cat").status_code == 429

    requests.post(f"{unsplash}/_admin/reset", timeout=5).raise_for_status()
    assert search(unsplash, query="cat").headers["X-Ratelimit-Remaining"] == "4999"


def test_download_trigger_needs_the_key_and_the_ixid_and_is_counted(unsplash: str) -> None:
    photo = search(unsplash, query="coffee", per_page=1).json()["results"][0]
    location = photo["links"]["download_location"]
    before = stats(unsplash)["downloads"].get(photo["id"], 0)

    assert requests.get(location, timeout=5).status_code == 401
    assert requests.get(location.split("?")[0], headers=AUTH, timeout=5).status_code == 401
    triggered = requests.get(location, headers=AUTH, timeout=5)
    assert triggered.status_code == 200
    url = triggered.json()["url"]
    assert url.startswith(f"{unsplash}/images/photo-") and "ixid=" in url
    assert stats(unsplash)["downloads"][photo["id"]] == before + 1


def test_image_host_honors_width_and_format(unsplash: str) -> None:
    raw = search(unsplash, query="flower", per_page=1).json()["results"][0]["urls"]["raw"]
    image_requests = stats(unsplash)["image_requests"]
    formats = (("jpg", "image/jpeg", "JPEG"), ("png", "image/png", "PNG"), ("webp", "image/webp", "WEBP"))
    for fm, content_type, pillow_format in formats:
        answer = requests.get(raw, params={"w": 120, "fm": fm, "q": 80}, timeout=30)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == content_type
        with Image.open(io.BytesIO(answer.content)) as image:
            assert image.format == pillow_format and image.width == 120
    with Image.open(io.BytesIO(requests.get(raw, timeout=30).content)) as original:
        assert original.format == "JPEG" and original.width > 120  # a raw original is a full-size JPEG
    assert stats(unsplash)["image_requests"] == image_requests + 4
    assert requests.get(f"{unsplash}/images/photo-0-000000000000", timeout=5).status_code == 404


def test_dataset_tsv_has_the_lite_dataset_columns(unsplash: str) -> None:
    answer = requests.get(f"{unsplash}/dataset/photos.tsv000", timeout=60)
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.text), delimiter="\t"))
    assert len(rows) == 360
    # The Lite dataset's documented leading columns, spelled out: the stand-in is checked against the spec.
    assert list(rows[0])[:12] == [
        "photo_id", "photo_url", "photo_image_url", "photo_submitted_at", "photo_featured", "photo_width",
        "photo_height", "photo_aspect_ratio", "photo_description", "photographer_username",
        "photographer_first_name", "photographer_last_name",
    ]  # fmt: skip
    row = rows[1]
    assert UNSPLASH_ID.match(row["photo_id"]) and row["photo_featured"] in ("t", "f")
    assert datetime.fromisoformat(row["photo_submitted_at"]).tzinfo is None  # the dataset's times are bare UTC
    image = requests.get(row["photo_image_url"], params={"w": 64}, timeout=30)
    assert image.headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(image.content)) as decoded:
        assert decoded.width == 64


def test_website_paths_answer_pages_not_json(unsplash: str) -> None:
    """Attribution links must open; a connection pointed at the website gets HTML, which connectors detect."""
    photo = search(unsplash, query="temple", per_page=1).json()["results"][0]
    for url in (photo["links"]["html"], photo["user"]["links"]["html"], f"{unsplash}/search/photos?query=temple"):
        page = requests.get(url, timeout=5)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert requests.get(f"{unsplash}/photos/nonexistent1", timeout=5).status_code == 404
