"""Licenses: one vocabulary for every source, what each service's own words mean in it, and which terms allow
training a model and publishing it.

The vocabulary is SPDX license identifiers (`CC0-1.0`, `CC-BY-4.0`, `CC-BY-SA-2.0`, `ODbL-1.0`, ...) plus two
terms SPDX has no identifier for: `Unsplash` (the Unsplash License) and `public-domain-mark` (no copyright
restrictions known: Creative Commons' Public Domain Mark, Flickr's "No known copyright restrictions" of The
Commons, works of the US government). A service's terms with no place in it (Instagram's, ImageNet's
research-only access, "all rights reserved") map to None; the catalog keeps the service's own words beside
every term either way, so nothing a source said is lost.

Light on purpose (no third-party imports): DAG files read their defaults from here at parse time.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

UNSPLASH = "Unsplash"
PUBLIC_DOMAIN_MARK = "public-domain-mark"
CC0 = "CC0-1.0"

# What allows training a model and publishing it: public domain and CC0, CC BY and CC BY-SA (any version),
# the Unsplash License. Non-commercial and no-derivatives licenses, unlicensed material and research-only
# terms stay out unless an operator adds them (COLORFLOW_QUALITY_LICENSE_ALLOW_LIST).
DEFAULT_ALLOWED = (
    CC0,
    PUBLIC_DOMAIN_MARK,
    UNSPLASH,
    *(f"CC-BY-{version}" for version in ("1.0", "2.0", "2.5", "3.0", "4.0")),
    *(f"CC-BY-SA-{version}" for version in ("1.0", "2.0", "2.5", "3.0", "4.0")),
)

_CREATIVE_COMMONS = re.compile(r"(?i)cc-by(?P<terms>(?:-nc)?(?:-nd|-sa)?)-(?P<version>[1-4]\.[05])(?P<port>-igo)?")
# Pages that state a work's public-domain status instead of a license (Flickr's license table names them).
_PUBLIC_DOMAIN_PAGES = (
    ("creativecommons.org", "/publicdomain/mark/"),
    ("flickr.com", "/commons/usage"),
    ("usa.gov", "/copyright"),
    ("usa.gov", "/government-works"),
)
# Kaggle's license codes (its datasets_metadata.md), where they are not SPDX identifiers already.
KAGGLE_CODES = {
    "PDDL": "PDDL-1.0",
    "US-Government-Works": PUBLIC_DOMAIN_MARK,
    "apache-2.0": "Apache-2.0",
    "GPL-2.0": "GPL-2.0-only",
    "GPL-3.0": "GPL-3.0-only",
    "LGPL-3.0": "LGPL-3.0-only",
    "AGPL-3.0": "AGPL-3.0-only",
    "FDL-1.3": "GFDL-1.3-only",
    "copyright-authors": None,
    "other": None,
    "unknown": None,
    "EU-ODP-Legal-Notice": None,
}
# SPDX identifiers Kaggle uses as they are.
_KAGGLE_SPDX = frozenset({"ODbL-1.0", "DbCL-1.0", "CDLA-Permissive-1.0", "CDLA-Sharing-1.0", "ODC-By-1.0"})


def from_spdx(code: str | None) -> str | None:
    """A license code as SPDX (or a service using SPDX-like codes) writes it, in the vocabulary: Creative
    Commons codes in any letter case, and Kaggle's codes; None for anything else."""
    if not code:
        return None
    code = code.strip()
    if code.upper() == CC0.upper():
        return CC0
    if match := _CREATIVE_COMMONS.fullmatch(code):
        return f"CC-BY{match['terms'].upper()}-{match['version']}{'-IGO' if match['port'] else ''}"
    if code in KAGGLE_CODES:
        return KAGGLE_CODES[code]
    matched = {spdx.casefold(): spdx for spdx in _KAGGLE_SPDX}
    return matched.get(code.casefold())


def from_term(value: str | None) -> str | None:
    """A license an operator names (a DAG param, a setting) as the vocabulary has it: its own terms, any SPDX
    code `from_spdx` knows, or Creative Commons' own short names (`CC0 1.0`, `CC BY-SA 4.0`), which people
    write with spaces; None for anything else."""
    if value and value.strip() in (UNSPLASH, PUBLIC_DOMAIN_MARK):
        return value.strip()
    return from_spdx(value) or from_spdx(re.sub(r"\s+", "-", value.strip()) if value else None)


def from_url(url: str | None) -> str | None:
    """The license or public-domain statement a URL points to: Creative Commons license and dedication pages
    (`.../licenses/by-sa/2.0/`, `.../publicdomain/zero/1.0/`), the Public Domain Mark, and the pages Flickr's
    and COCO's license tables use for "No known copyright restrictions" and US government works."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    host, path = parts.netloc.lower().removeprefix("www."), parts.path.lower()
    if host == "creativecommons.org":
        if path.startswith("/publicdomain/zero/1.0"):
            return CC0
        if match := re.fullmatch(
            r"/licenses/(?P<kind>by(?:-nc)?(?:-nd|-sa)?)/(?P<version>[1-4]\.[05])(?P<port>/igo)?/?.*", path
        ):
            return from_spdx(f"cc-{match['kind']}-{match['version']}{'-igo' if match['port'] else ''}")
    if any(host.endswith(site) and path.startswith(page) for site, page in _PUBLIC_DOMAIN_PAGES):
        return PUBLIC_DOMAIN_MARK
    return None


def requires_attribution(license: str | None) -> bool:
    """Whether sharing a work (or what is made from it, such as a dataset's samples) must credit its author:
    every Creative Commons license with the BY element, any version, share-alike or not. CC0, the Public
    Domain Mark and the Unsplash License ask for no credit."""
    return bool(license) and _CREATIVE_COMMONS.fullmatch(license) is not None


def license_label(license: str | None, license_text: str | None) -> str:
    """A license as a person reads it in a verdict or a card: the term, and the source's words when they say
    more (or when there is no term)."""
    if license and license_text and license_text != license:
        return f"{license} ({license_text})"
    return license or license_text or "none recorded"
