"""Real captured responses, served again over HTTP on loopback, so a connector reads them exactly as it would
read the service: status, headers, body and all. The captures themselves live in `tests/captures/`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

CAPTURES = Path(__file__).resolve().parent / "captures"


@dataclass(frozen=True)
class Answer:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def capture(relative: str) -> bytes:
    """A capture's bytes, by its path under tests/captures."""
    return (CAPTURES / relative).read_bytes()


@contextlib.contextmanager
def replaying(answer_for: Callable[[str, dict[str, str]], Answer]) -> Iterator[str]:
    """Serve `answer_for(path, query)` for every GET on a loopback port; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
            answer = answer_for(parts.path, query)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
