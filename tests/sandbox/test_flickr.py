"""The Flickr stand-in behaves like Flickr where connectors get it wrong: errors with HTTP 200 (in JSON
labelled text/plain), numbers as strings, the per_page cap, inclusive upload-date bounds, pages that repeat
past 4,000 results, only the sizes a photo has on the static host, the placeholder image for a photo that is
gone, and Flickr's own license table. Requests go to a real sandbox process; what Flickr itself answered is
in `tests/captures/flickr/`.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from xml.etree import ElementTree

import requests
from PIL import Image

from sandbox.credentials import FLICKR_API_KEY
from sandbox.flickr import CROWD_SIZE, SEARCH_RESULT_LIMIT, FlickrCatalogue
from sandbox.library import PhotoLibrary
from tests.replay import capture

ALL_URL_EXTRAS = "url_sq,url_q,url_t,url_s,url_n,url_w,url_m,url_z,url_c,url_l,url_h,url_k,url_o"


def call(sandbox_url: str, **params: Any) -> requests.Response:
    query = {"api_key": FLICKR_API_KEY, "format": "json", "nojsoncallback": 1, **params}
    return requests.get(f"{sandbox_url}/flickr/services/rest/", params=query, timeout=30)


def search(sandbox_url: str, **params: Any) -> dict[str, Any]:
    response = call(sandbox_url, method="flickr.photos.search", **params)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["stat"] == "ok", body
    return body["photos"]


def crowd_day(library: PhotoLibrary) -> tuple[int, int]:
    start = datetime.combine(library.anchor - timedelta(days=1), time(), tzinfo=UTC)
    return int(start.timestamp()), int(start.timestamp()) + 86400 - 1


def test_search_schema_with_numbers_as_strings(sandbox_url: str, library: PhotoLibrary) -> None:
    """Flickr sends total, license and dateupload as strings but page, perpage and farm as numbers."""
    photos = search(sandbox_url, tags="cat", extras="license,date_upload,owner_name,tags,url_s,url_o")
    cats = library.search("cat")
    assert (photos["page"], photos["pages"], photos["perpage"], photos["total"]) == (1, 1, 100, str(len(cats)))
    record = photos["photo"][0]
    assert set(record) >= {"id", "owner", "secret", "server", "farm", "title", "ispublic", "isfriend", "isfamily"}
    assert record["id"].startswith("53") and len(record["id"]) == 11 and record["id"].isdigit()
    assert len(record["secret"]) == 10 and isinstance(record["farm"], int)
    assert record["owner"].split("@")[1].startswith("N0")
    assert isinstance(record["license"], str) and isinstance(record["dateupload"], str)
    assert isinstance(record["height_s"], int) and isinstance(record["height_o"], str)
    assert record["url_s"].startswith(f"{sandbox_url}/flickr/live/")
    assert "cat" in record["tags"].split()
    # The records are the library's cat photos: same upload times, licenses and authors.
    assert sorted(int(p["dateupload"]) for p in photos["photo"]) == sorted(int(c.created_at.timestamp()) for c in cats)
    assert Counter(p["license"] for p in photos["photo"]) == Counter(str(c.license_id) for c in cats)
    assert {p["ownername"] for p in photos["photo"]} == {c.author_name for c in cats}


def test_extras_decide_the_optional_fields(sandbox_url: str) -> None:
    record = search(sandbox_url, tags="coffee", per_page=1)["photo"][0]
    assert not {"license", "dateupload", "ownername", "url_l", "tags"} & set(record)


def test_per_page_defaults_to_100_and_is_capped_at_500(sandbox_url: str) -> None:
    assert len(search(sandbox_url, tags="color")["photo"]) == 100
    capped = search(sandbox_url, tags="crowd", per_page=1000)
    assert capped["perpage"] == 500 and len(capped["photo"]) == 500


def test_upload_date_bounds_are_inclusive_in_both_formats(sandbox_url: str, library: PhotoLibrary) -> None:
    """Flickr documents min as 'greater than or equal' and max as 'less than or equal', unix or MySQL."""
    photo = library.photos[7]
    moment = int(photo.created_at.timestamp())
    mysql = photo.created_at.strftime("%Y-%m-%d %H:%M:%S")
    same_second = {"tags": "color", "extras": "date_upload"}
    exact = search(sandbox_url, min_upload_date=moment, max_upload_date=moment, **same_second)["photo"]
    assert [int(record["dateupload"]) for record in exact] == [moment]
    assert search(sandbox_url, min_upload_date=mysql, max_upload_date=mysql, **same_second)["photo"] == exact
    assert search(sandbox_url, min_upload_date=moment + 1, max_upload_date=moment + 1, **same_second)["total"] == "0"


def test_license_filter_takes_a_comma_list(sandbox_url: str, library: PhotoLibrary) -> None:
    photos = search(sandbox_url, tags="color", license="4,9", extras="license", per_page=500)
    expected = [photo for photo in library.photos if photo.license_id in (4, 9)]
    assert int(photos["total"]) == len(expected) == len(photos["photo"])
    assert {record["license"] for record in photos["photo"]} == {"4", "9"}


def test_errors_come_with_http_200_and_stat_fail(sandbox_url: str) -> None:
    bad_key = call(sandbox_url, method="flickr.photos.search", tags="cat", api_key="not-a-key")
    assert bad_key.status_code == 200 and bad_key.headers["Content-Type"].startswith("text/plain")
    assert bad_key.json() == json.loads(capture("flickr/error_100_invalid_api_key.2012-05-07.flickrie.json"))
    unknown_key = call(sandbox_url, method="flickr.photos.search", tags="cat", api_key="0123456789abcdef" * 2)
    assert unknown_key.json()["message"] == "Invalid API Key (Key not found)"
    no_key = requests.get(
        f"{sandbox_url}/flickr/services/rest/?method=flickr.photos.search&format=json&nojsoncallback=1"
    )
    assert (no_key.status_code, no_key.json()["code"]) == (200, 100)
    unknown_method = call(sandbox_url, method="flickr.photos.nope")
    assert (unknown_method.status_code, unknown_method.json()["code"]) == (200, 112)
    assert call(sandbox_url, method="flickr.photos.search").json()["code"] == 3  # parameterless search


def test_other_response_formats(sandbox_url: str) -> None:
    """Without nojsoncallback Flickr wraps JSON in jsonFlickrApi(...); without format it answers XML."""
    jsonp = call(sandbox_url, method="flickr.photos.search", tags="cat", per_page=1, nojsoncallback=0)
    assert jsonp.text.startswith("jsonFlickrApi({") and jsonp.headers["Content-Type"].startswith("text/javascript")
    xml = call(sandbox_url, method="flickr.photos.search", tags="cat", per_page=1, format="rest")
    assert xml.text.startswith("<?xml") and '<rsp stat="ok">' in xml.text and "<photo " in xml.text


def test_the_license_table_is_flickrs_own(sandbox_url: str) -> None:
    """The same ids, names, URLs and order as Flickr's answer of 2023 (ids as strings in JSON, as in 2012)."""
    real = ElementTree.fromstring(capture("flickr/licenses_getInfo.2023-11-05.flickr-foundation.xml"))
    expected = [{key: entry.get(key) for key in ("id", "name", "url")} for entry in real.iter("license")]
    assert call(sandbox_url, method="flickr.photos.licenses.getInfo").json()["licenses"]["license"] == expected


def test_paging_past_4000_results_repeats_photos(sandbox_url: str, library: PhotoLibrary) -> None:
    """The crowd day holds 4,600 photos; paging it naively yields only 4,000 distinct ones."""
    low, high = crowd_day(library)
    seen: list[str] = []
    pages: list[list[str]] = []
    for page in range(1, 11):
        photos = search(sandbox_url, tags="crowd", min_upload_date=low, max_upload_date=high, per_page=500, page=page)
        assert (photos["total"], photos["pages"], photos["page"]) == (str(CROWD_SIZE), 10, page)
        pages.append([record["id"] for record in photos["photo"]])
        seen += pages[-1]
    assert len(seen) == 10 * 500 and len(set(seen)) == SEARCH_RESULT_LIMIT  # 600 of the crowd never came
    assert pages[8] == pages[7] and pages[9] == pages[7]
    first_half = search(sandbox_url, tags="crowd", min_upload_date=low, max_upload_date=low + 43199)
    assert int(first_half["total"]) == CROWD_SIZE // 2


def test_static_host_serves_each_size_the_photo_has(sandbox_url: str, library: PhotoLibrary) -> None:
    """Sizes larger than the original are never made: a search lists only the others, and the static host
    answers a made-up URL of a missing size with the placeholder."""
    record = search(sandbox_url, tags="rocket", per_page=1, extras=ALL_URL_EXTRAS)["photo"][0]
    original = Image.open(io.BytesIO(requests.get(record["url_o"], timeout=10).content))
    assert original.size == (int(record["width_o"]), int(record["height_o"]))
    sizes = (("sq", 75), ("q", 150), ("t", 100), ("s", 240), ("m", 500), ("z", 640), ("l", 1024), ("h", 1600))
    listed = [(label, longest) for label, longest in sizes if f"url_{label}" in record]
    assert [label for label, longest in listed] == [
        label for label, longest in sizes if label in ("sq", "q") or longest <= max(original.size)
    ]
    too_large = record["url_t"].replace("_t.jpg", "_b.jpg")
    if max(original.size) < 1024:
        assert requests.get(too_large, timeout=10).url.endswith("/photo_unavailable.png")
    for label, longest in listed:
        response = requests.get(record[f"url_{label}"], timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "JPEG" and image.size == (record[f"width_{label}"], record[f"height_{label}"])
        assert max(image.size) == longest
    assert Image.open(io.BytesIO(requests.get(record["url_sq"], timeout=10).content)).size == (75, 75)
    thumbnail = record["url_t"].rsplit("/", 1)[1]
    assert thumbnail == f"{record['id']}_{record['secret']}_t.jpg"


def test_a_missing_photo_redirects_to_the_placeholder(sandbox_url: str) -> None:
    """Flickr answers a gone photo with a redirect to an image, HTTP 200: status checks never notice."""
    record = search(sandbox_url, tags="flower", per_page=1, extras="url_s")["photo"][0]
    wrong_secret = record["url_s"].replace(record["secret"], "0" * 10)
    unknown_id = record["url_s"].replace(record["id"], "53999999999")
    wrong_server = record["url_s"].replace("/65535/", "/4242/")
    redirect = requests.get(wrong_secret, timeout=10, allow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["Location"].endswith("/photo_unavailable.png")
    bodies = set()
    for url in (wrong_secret, unknown_id, wrong_server):
        response = requests.get(url, timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        assert response.url.endswith("/flickr/yimg/pw/images/en-us/photo_unavailable.png")
        bodies.add(response.content)
    assert len(bodies) == 1
    assert Image.open(io.BytesIO(bodies.pop())).size == (500, 374)
    assert requests.get(record["url_s"], timeout=10).headers["Content-Type"] == "image/jpeg"


def test_photo_pages_exist(sandbox_url: str) -> None:
    record = search(sandbox_url, tags="temple", per_page=1, extras="owner_name")["photo"][0]
    page = requests.get(f"{sandbox_url}/flickr/photos/{record['owner']}/{record['id']}/", timeout=10)
    assert page.status_code == 200 and record["ownername"] in page.text
    assert requests.get(f"{sandbox_url}/flickr/photos/{record['owner']}/", timeout=10).status_code == 200
    assert requests.get(f"{sandbox_url}/flickr/photos/nobody@N00/1/", timeout=10).status_code == 404


def test_catalogue_ids_and_measured_sizes() -> None:
    """Sizes are measured without rendering each photo; they must equal the rendered photos' sizes."""
    library = PhotoLibrary(anchor=date(2026, 11, 23))
    catalogue = FlickrCatalogue(library)
    assert len({photo.id for photo in catalogue.photos}) == len(library.photos) + CROWD_SIZE
    for number in range(0, len(library.photos), 20):
        assert catalogue.native_size(number) == library.image(number).size
        width, height = catalogue.size_of(number, "m")
        assert Image.open(io.BytesIO(catalogue.encode(number, "m"))).size == (width, height)
