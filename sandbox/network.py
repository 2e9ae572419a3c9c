"""The sandbox playing the internet: latency on what the real services serve from far away (images and
archives), and a count of the requests each part of it has in flight at once.

- Latency: `COLORFLOW_SANDBOX_LATENCY_MS` (or `POST /_network {"latency_ms": 200}`) delays the start of every
  response whose body is an image or an archive, as a CDN across the internet does (100-300 ms is usual).
  The wait is asynchronous, so a thousand delayed responses hold no server thread and nothing else waits.
- Concurrency: every request is counted while it is in flight, per area (the first two path segments,
  such as `/flickr/live`); `GET /_network` reports the most seen at once per area, `DELETE /_network` starts
  over. A test reads it to check that a client never had more requests in flight to one host than its cap.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_VARIABLE = "COLORFLOW_SANDBOX_LATENCY_MS"
# Bodies that come from image hosts and download mirrors, far from the client.
DISTANT_TYPES = (b"image/", b"application/x-tar", b"application/gzip", b"application/zip", b"application/octet")


class NetworkSettings(BaseModel):
    latency_ms: float = Field(ge=0, description="Delay before each image or archive response starts.")


class Network:
    """The latency in force and the in-flight counts; thread-safe (the admin route runs in a worker thread)."""

    def __init__(self, latency_ms: float) -> None:
        self.latency_ms = latency_ms
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._most: Counter[str] = Counter()

    def enter(self, area: str) -> None:
        with self._lock:
            self._in_flight[area] += 1
            self._most[area] = max(self._most[area], self._in_flight[area])

    def leave(self, area: str) -> None:
        with self._lock:
            self._in_flight[area] -= 1

    def most_in_flight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._most)

    def reset(self) -> None:
        with self._lock:
            self._most = Counter(self._in_flight)


def network_from_environment() -> Network:
    return Network(float(os.environ.get(LATENCY_VARIABLE) or 0))


def area_of(path: str) -> str:
    return "/" + "/".join(path.strip("/").split("/")[:2])


class NetworkMiddleware:
    """Counts each request while it is in flight and delays distant responses by the latency in force."""

    def __init__(self, app: ASGIApp, network: Network) -> None:
        self.app, self.network = app, network

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_network"):
            await self.app(scope, receive, send)
            return
        area = area_of(scope["path"])
        self.network.enter(area)

        async def send_late(message: Message) -> None:
            if message["type"] == "http.response.start" and self.network.latency_ms > 0:
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if content_type.startswith(DISTANT_TYPES):
                    await asyncio.sleep(self.network.latency_ms / 1000)
            await send(message)

        try:
            await self.app(scope, receive, send_late)
        finally:
            self.network.leave(area)


def network_routes(network: Network) -> APIRouter:
    router = APIRouter(prefix="/_network", tags=["network"])

    @router.get("", summary="The most requests seen in flight at once, per area")
    def most_in_flight() -> dict[str, object]:
        return {"latency_ms": network.latency_ms, "most_in_flight": network.most_in_flight()}

    @router.post("", summary="Set the latency of image and archive responses")
    def configure(settings: NetworkSettings) -> NetworkSettings:
        network.latency_ms = settings.latency_ms
        return settings

    @router.delete("", status_code=204, summary="Start counting again")
    def reset() -> None:
        network.reset()

    return router
