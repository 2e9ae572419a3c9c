"""Run the sandbox host: `python -m sandbox --port 8790` (binds to loopback unless told otherwise)."""

from __future__ import annotations

import argparse

import uvicorn

from sandbox.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8790, help="port to listen on (default: 8790)")
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
