"""The Instagram stand-in behaves like the real service where connectors depend on it: Graph API hashtag
search with its 30-hashtag budget, cursor paging, Graph error objects, signed CDN URLs that expire, a
login wall, robots.txt, and a hashtag page whose posts exist only after JavaScript has run.

All requests go over HTTP to the sandbox process (`sandbox_url`); nothing is mocked.
"""

from __future__ import annotations

import io
import urllib.robotparser
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from bs4 import BeautifulSoup
from PIL import Image

from sandbox.credentials import INSTAGRAM_ACCESS_TOKEN, INSTAGRAM_SESSION_COOKIE, INSTAGRAM_USER_ID
from sandbox.instagram import WEB_APP_ID

FIELDS = "id,media_type,media_url,permalink,caption,timestamp"


@pytest.fixture
def instagram(sandbox_service) -> str:
    """The stand-in's base URL, with budgets, clock and URL lifetime reset before and after the test."""
    return sandbox_service("instagram")


def graph(base: str, path: str, **params: object) -> requests.Response:
    params.setdefault("access_token", INSTAGRAM_ACCESS_TOKEN)
    return requests.get(f"{base}/graph/v21.0/{path}", params=params, timeout=10)


def search(base: str, tag: str) -> requests.Response:
    return graph(base, "ig_hashtag_search", user_id=INSTAGRAM_USER_ID, q=tag)


def hashtag(base: str, tag: str) -> str:
    answer = search(base, tag)
    answer.raise_for_status()
    return answer.json()["data"][0]["id"]


def all_pages(base: str, tag_id: str, edge: str, limit: int) -> tuple[list[dict], int]:
    """Every item of an edge, read with `paging.cursors.after`, and the number of pages it took."""
    items, after, pages = [], None, 0
    while True:
        params = {"user_id": INSTAGRAM_USER_ID, "fields": FIELDS, "limit": limit, **({"after": after} if after else {})}
        body = graph(base, f"{tag_id}/{edge}", **params).json()
        items += body["data"]
        pages += 1
        if "paging" not in body:
            return items, pages
        assert body["paging"]["next"]
        after = body["paging"]["cursors"]["after"]


def graph_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")


def test_hashtag_search_gives_a_static_17_digit_id(instagram: str) -> None:
    first, again = hashtag(instagram, "cat"), hashtag(instagram, "#Cat")
    assert first == again and len(first) == 17 and first.isdigit()
    assert hashtag(instagram, "coffee") != first
    assert graph(instagram, first, fields="id,name").json() == {"id": first, "name": "cat"}


def test_recent_media_pages_with_cursors_and_covers_only_the_last_24_hours(instagram: str) -> None:
    tag_id = hashtag(instagram, "space")
    items, pages = all_pages(instagram, tag_id, "recent_media", limit=5)
    assert pages > 1 and len(items) > 5
    assert len({item["id"] for item in items}) == len(items)
    now = datetime.now(UTC)
    times = [graph_time(item["timestamp"]) for item in items]
    assert all(now - timedelta(hours=24, minutes=1) <= moment <= now for moment in times)
    assert times == sorted(times, reverse=True)
    for item in items:
        assert set(item) == set(FIELDS.split(","))
        assert "#space" in item["caption"] and item["media_type"] in ("IMAGE", "VIDEO")


def test_paging_next_is_a_working_url_with_the_same_query(instagram: str) -> None:
    tag_id = hashtag(instagram, "photo")
    first = graph(instagram, f"{tag_id}/recent_media", user_id=INSTAGRAM_USER_ID, fields="id", limit=3).json()
    following = requests.get(first["paging"]["next"], timeout=10).json()
    query = parse_qs(urlsplit(first["paging"]["next"]).query)
    assert query["after"] == [first["paging"]["cursors"]["after"]] and query["fields"] == ["id"]
    assert len(following["data"]) == 3
    assert not {item["id"] for item in following["data"]} & {item["id"] for item in first["data"]}


def test_top_media_is_deterministic_and_reaches_older_posts(instagram: str) -> None:
    tag_id = hashtag(instagram, "cat")
    top, _ = all_pages(instagram, tag_id, "top_media", limit=50)
    again, _ = all_pages(instagram, tag_id, "top_media", limit=7)
    recent, _ = all_pages(instagram, tag_id, "recent_media", limit=50)
    assert [item["id"] for item in top] == [item["id"] for item in again]
    assert len(top) > len(recent)
    assert {item["media_type"] for item in top} == {"IMAGE", "VIDEO"}
    assert min(graph_time(item["timestamp"]) for item in top) < datetime.now(UTC) - timedelta(days=2)


def test_token_errors_are_graph_error_objects(instagram: str) -> None:
    tag_id = hashtag(instagram, "cat")
    missing = graph(instagram, f"{tag_id}/recent_media", user_id=INSTAGRAM_USER_ID, access_token="")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 104
    wrong = graph(instagram, f"{tag_id}/recent_media", user_id=INSTAGRAM_USER_ID, access_token="not-the-token")
    error = wrong.json()["error"]
    assert wrong.status_code == 400
    assert error["type"] == "OAuthException" and error["code"] == 190 and error["fbtrace_id"]
    assert "Invalid OAuth access token" in error["message"]
    assert "invalid_token" in wrong.headers["WWW-Authenticate"]
    by_header = requests.get(
        f"{instagram}/graph/v21.0/{tag_id}",
        headers={"Authorization": f"Bearer {INSTAGRAM_ACCESS_TOKEN}"},
        params={"fields": "id,name"},
        timeout=10,
    )
    assert by_header.json()["name"] == "cat"


def test_hashtag_media_refuse_the_username_field_and_unknown_ids(instagram: str) -> None:
    tag_id = hashtag(instagram, "cat")
    answer = graph(instagram, f"{tag_id}/recent_media", user_id=INSTAGRAM_USER_ID, fields="id,username")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 100
    unknown = graph(instagram, "17899999999999999/recent_media", user_id=INSTAGRAM_USER_ID).json()["error"]
    assert (unknown["code"], unknown["error_subcode"]) == (100, 33)


def test_the_31st_unique_hashtag_in_7_days_is_refused(instagram: str) -> None:
    for number in range(30):
        assert search(instagram, f"budget{number:02d}").status_code == 200
    assert search(instagram, "budget00").status_code == 200, "a hashtag already queried this week is free"
    refused = search(instagram, "onemore")
    error = refused.json()["error"]
    assert refused.status_code == 400 and error["type"] == "OAuthException"
    assert (error["code"], error["error_subcode"]) == (24, 2207034)
    assert "30 unique hashtags" in error["message"]
    listed = graph(instagram, f"{INSTAGRAM_USER_ID}/recently_searched_hashtags").json()["data"]
    assert len(listed) == 30
    # The budget is a rolling 7 days: a week later the old hashtags no longer count.
    later = datetime.now(UTC) + timedelta(days=7, minutes=1)
    requests.post(f"{instagram}/_admin/config", json={"now": later.isoformat()}, timeout=5).raise_for_status()
    assert search(instagram, "onemore").status_code == 200


def test_cdn_urls_are_signed_and_expire(instagram: str) -> None:
    tag_id = hashtag(instagram, "coffee")
    image = next(item for item in all_pages(instagram, tag_id, "top_media", 50)[0] if item["media_type"] == "IMAGE")
    fetched = requests.get(image["media_url"], timeout=10)
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(fetched.content)).format == "JPEG"
    expiry = int(parse_qs(urlsplit(image["media_url"]).query)["oe"][0], 16)
    assert 3500 < expiry - datetime.now(UTC).timestamp() <= 3600

    tampered = image["media_url"].replace("oh=", "oh=0")
    assert (requests.get(tampered, timeout=10).status_code, requests.get(tampered, timeout=10).text) == (
        403,
        "Bad URL hash",
    )

    requests.post(f"{instagram}/_admin/config", json={"url_ttl_s": 0}, timeout=5).raise_for_status()
    stale = graph(instagram, image["id"], fields="media_url").json()["media_url"]
    expired = requests.get(stale, timeout=10)
    assert (expired.status_code, expired.text) == (403, "URL signature expired")

    requests.post(f"{instagram}/_admin/config", json={"url_ttl_s": 3600}, timeout=5).raise_for_status()
    fresh = graph(instagram, image["id"], fields="media_url").json()["media_url"]
    assert requests.get(fresh, timeout=10).content == fetched.content


def test_hashtag_pages_are_behind_a_login_wall(instagram: str) -> None:
    page = f"{instagram}/explore/tags/cat/"
    for cookies in ({}, {"sessionid": "someone-elses-session"}):
        answer = requests.get(page, cookies=cookies, allow_redirects=False, timeout=10)
        assert answer.status_code == 302
        location = urlsplit(answer.headers["Location"])
        assert location.path == "/instagram/accounts/login/"
        assert parse_qs(location.query)["next"] == ["/instagram/explore/tags/cat/"]
    login = requests.get(page, timeout=10)
    assert login.status_code == 200 and "/accounts/login/" in login.url
    assert BeautifulSoup(login.text, "html.parser").find("input", attrs={"name": "password"}) is not None
    api = requests.get(f"{instagram}/api/v1/tags/web_info/", params={"tag_name": "cat"}, timeout=10)
    assert api.status_code == 401 and api.json()["require_login"] is True


def test_robots_txt_admits_named_search_engines_only(instagram: str) -> None:
    answer = requests.get(f"{instagram}/robots.txt", timeout=10)
    assert answer.headers["Content-Type"].startswith("text/plain")
    rules = urllib.robotparser.RobotFileParser()
    rules.parse(answer.text.splitlines())
    assert rules.can_fetch("Googlebot", "https://www.instagram.com/p/abc/")
    assert not rules.can_fetch("Googlebot", "https://www.instagram.com/explore/tags/cat/")
    assert not rules.can_fetch("ColorflowBot/0.1", "https://www.instagram.com/p/abc/")
    assert not rules.can_fetch("AnyOtherBot", "https://www.instagram.com/")


def test_a_plain_fetch_of_a_hashtag_page_shows_no_photos(instagram: str) -> None:
    cookies = {"sessionid": INSTAGRAM_SESSION_COOKIE}
    page = requests.get(f"{instagram}/explore/tags/cat/", cookies=cookies, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select('a[href*="/p/"]') == [] and soup.find_all("img") == []
    assert soup.select_one("[data-grid]") is not None, "the empty grid the JavaScript fills"

    api = requests.get(
        f"{instagram}/api/v1/tags/web_info/",
        params={"tag_name": "cat"},
        cookies=cookies,
        headers={"X-IG-App-ID": WEB_APP_ID},
        timeout=10,
    ).json()["data"]
    assert api["media_count"] > 12 and len(api["recent"]["items"]) == 12 and api["recent"]["more_available"]
    item = api["recent"]["items"][0]
    assert requests.get(item["image_versions2"]["candidates"][0]["url"], timeout=10).status_code == 200
    post = requests.get(f"{instagram}/p/{item['code']}/", timeout=10)
    assert post.status_code == 200 and item["user"]["username"] in post.text


def test_posts_not_yet_published_are_nowhere(instagram: str) -> None:
    tag_id = hashtag(instagram, "cat")
    before, _ = all_pages(instagram, tag_id, "top_media", 50)
    earlier = datetime.now(UTC) - timedelta(days=2)
    requests.post(f"{instagram}/_admin/config", json={"now": earlier.isoformat()}, timeout=5).raise_for_status()
    after, _ = all_pages(instagram, tag_id, "top_media", 50)
    assert 0 < len(after) < len(before)
    assert all(graph_time(item["timestamp"]) <= earlier + timedelta(seconds=5) for item in after)
    newest = max(before, key=lambda item: graph_time(item["timestamp"]))
    assert graph(instagram, newest["id"], fields="id").json()["error"]["code"] == 100
