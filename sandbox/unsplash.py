"""Unsplash stand-in (being written)."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.library import PhotoLibrary

PREFIX = "unsplash"


def create_router(library: PhotoLibrary) -> APIRouter:
    return APIRouter()
