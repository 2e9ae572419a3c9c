"""What one client may ask of the Studio at once, and how large an upload may be."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class TooBusy(RuntimeError):
    """A client already has as much work in flight as it may."""


class ClientLimits:
    """Uploads being worked on, per client address; one more than `per_client` is refused, not queued, so one
    client cannot fill the server's queue ahead of everyone else."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        with self._lock:
            if self._in_flight[client] >= self.per_client:
                raise TooBusy(f"{self.per_client} uploads of yours are being colorized; send more when one is done")
            self._in_flight[client] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[client] -= 1
                if not self._in_flight[client]:
                    del self._in_flight[client]
