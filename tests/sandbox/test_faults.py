"""Fault rules are spent one request at a time and only on matching paths."""

from __future__ import annotations

import requests


def test_rules_apply_to_matching_paths_the_given_number_of_times(sandbox_url: str, faults) -> None:
    faults(path_prefix="/healthz", kind="429", times=2, retry_after=7)
    first = requests.get(f"{sandbox_url}/healthz", timeout=5)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert requests.get(f"{sandbox_url}/healthz", timeout=5).status_code == 429
    assert requests.get(f"{sandbox_url}/healthz", timeout=5).status_code == 200


def test_listing_and_clearing_rules(sandbox_url: str, faults) -> None:
    faults(path_prefix="/nowhere", kind="500", times=3)
    assert [rule["kind"] for rule in requests.get(f"{sandbox_url}/_faults", timeout=5).json()] == ["500"]
    requests.delete(f"{sandbox_url}/_faults", timeout=5)
    assert requests.get(f"{sandbox_url}/_faults", timeout=5).json() == []


def test_truncate_sends_half_the_announced_body(sandbox_url: str, faults) -> None:
    faults(path_prefix="/healthz", kind="truncate")
    response = requests.get(f"{sandbox_url}/healthz", timeout=5, stream=True)
    announced = int(response.headers["Content-Length"])
    received = b""
    try:
        for chunk in response.raw.stream(1024, decode_content=False):
            received += chunk
    except Exception:  # urllib3 reports the short body; what matters is how much came
        pass
    assert len(received) < announced
