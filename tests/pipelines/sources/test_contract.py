"""Every registered source keeps the contract the ingestion tasks rely on, and is found by its name."""

from __future__ import annotations

import pytest

from pipelines.sources.contract import DumpSource, WebSource, dump_source, web_source

WEB = ("unsplash", "flickr", "instagram")
DUMPS = ("imagenet", "coco", "kaggle")


@pytest.mark.parametrize("name", WEB)
def test_each_web_source_implements_the_protocol(name: str) -> None:
    source = web_source(name)
    assert isinstance(source, WebSource) and source.name == name


@pytest.mark.parametrize("name", DUMPS)
def test_each_dump_implements_the_protocol(name: str) -> None:
    source = dump_source(name)
    assert isinstance(source, DumpSource) and source.name == name


def test_an_unknown_source_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no source called 'pinterest': there are flickr, instagram, unsplash"):
        web_source("pinterest")
    with pytest.raises(ValueError, match="no source called 'unsplash'"):
        dump_source("unsplash")
