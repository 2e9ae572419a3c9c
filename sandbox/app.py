"""The sandbox host: one HTTP process that serves every stand-in service under its own prefix."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

# Stand-in services, by URL prefix; each source issue adds its router here.
SERVICES: dict[str, APIRouter] = {}


def create_app() -> FastAPI:
    app = FastAPI(title="Colorflow sandbox", summary="Local stand-ins for the web services Colorflow reads.")
    for prefix, router in SERVICES.items():
        app.include_router(router, prefix=f"/{prefix}")

    @app.get("/healthz")
    def health() -> dict[str, object]:
        return {"status": "ok", "services": sorted(SERVICES)}

    return app
