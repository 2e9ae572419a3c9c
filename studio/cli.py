"""`colorflow studio`: serve Colorflow Studio on its own (`make up` starts it with the stack)."""

from __future__ import annotations

import argparse

DEFAULT_PORT = 5600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from studio.app import create_app

    print(f"Colorflow Studio on http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
