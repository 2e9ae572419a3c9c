"""The sandbox host: one HTTP process that serves every stand-in service under its own path prefix.

Each service module exposes `PREFIX` and `create_router(library)`; production connectors reach the real
host where the sandbox has `http://127.0.0.1:8790/<prefix>`, so pointing a connection at the real
service is the only change between the two.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from sandbox.faults import FaultBoard, FaultMiddleware, fault_routes
from sandbox.library import PhotoLibrary
from sandbox.network import NetworkMiddleware, network_from_environment, network_routes

SERVICE_MODULES = (
    "sandbox.unsplash",
    "sandbox.flickr",
    "sandbox.instagram",
    "sandbox.files",
    "sandbox.imagenet",
    "sandbox.large_dump",
    "sandbox.coco",
    "sandbox.kaggle",
)


def create_app(library: PhotoLibrary | None = None) -> FastAPI:
    library = library or PhotoLibrary()
    board = FaultBoard()
    app = FastAPI(title="Colorflow sandbox", summary="Local stand-ins for the web services Colorflow reads.")
    prefixes = []
    for module_name in SERVICE_MODULES:
        service = importlib.import_module(module_name)
        app.include_router(service.create_router(library), prefix=f"/{service.PREFIX}")
        prefixes.append(service.PREFIX)
    app.include_router(fault_routes(board))
    network = network_from_environment()
    app.include_router(network_routes(network))
    app.add_middleware(FaultMiddleware, board=board)
    # Added last, so it runs first: a request is in flight from the moment it arrives, faults included.
    app.add_middleware(NetworkMiddleware, network=network)

    @app.get("/healthz")
    def health() -> dict[str, object]:
        return {"status": "ok", "services": sorted(prefixes), "photos": len(library.photos)}

    return app
