"""The photographs every sandbox service serves: real color photos shipped inside pip packages
(scikit-image, scikit-learn, matplotlib), and deterministic variants of them (crops, mirror images,
hue turns), a few hundred distinct images in all; `COLORFLOW_SANDBOX_VARIANTS` asks for more variants of each
(load drills use thousands).

Each photo also carries the metadata a photo service would hold: keywords to search by, an author, a
license id, and a creation time. Creation times fall in the days before the library's anchor date
(today, UTC, unless pinned), so a daily ingestion DAG, and a backfill of recent days, always finds photos
in its window.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, cached_property, lru_cache
from pathlib import Path

from PIL import Image, ImageOps

# The color photographs among the packages' samples, with words people would search them by.
BASE_PHOTOS: dict[str, tuple[str, ...]] = {
    "astronaut.png": ("astronaut", "space", "portrait", "people"),
    "chelsea.png": ("cat", "animal", "pet"),
    "coffee.png": ("coffee", "food", "drink"),
    "rocket.jpg": ("rocket", "space", "launch"),
    "motorcycle_left.png": ("motorcycle", "vehicle", "street"),
    "hubble_deep_field.jpg": ("galaxy", "space", "stars"),
    "china.jpg": ("temple", "architecture", "travel", "landscape"),
    "flower.jpg": ("flower", "nature", "garden"),
    "grace_hopper.jpg": ("portrait", "people", "history"),
}
COMMON_KEYWORDS = ("color", "photo")
VARIANTS_PER_BASE = 40
# The crop, mirror and hue recipe repeats after this many variants; each further round crops a little tighter.
VARIANT_CYCLE = 110
DAYS_SPANNED = 30
SERVED_LONG_SIDE = 640
AUTHORS = (
    ("Ada Okafor", "adaokafor"),
    ("Bruno Lindqvist", "brunolq"),
    ("Chen Wei", "chenwei_photo"),
    ("Dalia Haddad", "daliah"),
    ("Emil Novak", "emilnovak"),
    ("Farah Qureshi", "farahq"),
    ("Gustavo Reyes", "greyes"),
    ("Hana Sato", "hanasato"),
)
# Flickr's license ids (flickr.photos.licenses.getInfo): 0 is All Rights Reserved; the rest are CC and
# public-domain marks, of which connectors keep only their allow-list.
FLICKR_LICENSES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)


@dataclass(frozen=True)
class LibraryPhoto:
    """One distinct image the sandbox can serve, with the metadata services report about it."""

    number: int
    base: str
    variant: int
    keywords: tuple[str, ...]
    created_at: datetime
    author_name: str
    author_username: str
    license_id: int

    @property
    def slug(self) -> str:
        return f"{Path(self.base).stem.replace('_', '-')}-{self.variant:02d}"


def _variant_of(image: Image.Image, variant: int) -> Image.Image:
    """A deterministic, visibly different take on `image`: crop window, mirror and hue turn by number."""
    width, height = image.size
    scale = 0.55 + 0.40 * ((variant * 7) % 10) / 9  # crop covers 55% to 95% of each side
    tighter = 2 * (variant // VARIANT_CYCLE)
    crop_w, crop_h = max(16, int(width * scale) - tighter), max(16, int(height * scale) - tighter)
    left = ((variant * 37) % 11) * (width - crop_w) // 10
    top = ((variant * 53) % 11) * (height - crop_h) // 10
    result = image.crop((left, top, left + crop_w, top + crop_h))
    if variant % 2:
        result = ImageOps.mirror(result)
    hue_turn = (variant // 2) % 5 * 12  # 0 to 48 degrees of 255: still natural-looking colors
    if hue_turn:
        hue, saturation, value = result.convert("HSV").split()
        hue = hue.point(lambda level: (level + hue_turn) % 256)
        result = Image.merge("HSV", (hue, saturation, value)).convert("RGB")
    result.thumbnail((SERVED_LONG_SIDE, SERVED_LONG_SIDE), Image.Resampling.LANCZOS)
    return result


class PhotoLibrary:
    """All sandbox photos, numbered 0..N-1, and their encodings on demand."""

    def __init__(self, anchor: date | None = None) -> None:
        pinned = os.environ.get("COLORFLOW_SANDBOX_ANCHOR_DATE")
        self.anchor = anchor or (date.fromisoformat(pinned) if pinned else datetime.now(UTC).date())
        self.variants = int(os.environ.get("COLORFLOW_SANDBOX_VARIANTS", VARIANTS_PER_BASE))

    @property
    def _paths(self) -> dict[str, Path]:
        return base_photo_files()

    @cached_property
    def photos(self) -> list[LibraryPhoto]:
        midnight = datetime.combine(self.anchor, time(), tzinfo=UTC)
        photos = []
        for variant in range(self.variants):
            for base, keywords in BASE_PHOTOS.items():
                number = len(photos)
                name, username = AUTHORS[number % len(AUTHORS)]
                photos.append(
                    LibraryPhoto(
                        number=number,
                        base=base,
                        variant=variant,
                        keywords=keywords + COMMON_KEYWORDS,
                        # Spread over the days before the anchor, at varied times of day.
                        created_at=midnight
                        - timedelta(days=1 + number % DAYS_SPANNED)
                        + timedelta(seconds=(number * 7919) % 86400),
                        author_name=name,
                        author_username=username,
                        license_id=FLICKR_LICENSES[number % len(FLICKR_LICENSES)],
                    )
                )
        return photos

    def get(self, number: int) -> LibraryPhoto | None:
        return self.photos[number] if 0 <= number < len(self.photos) else None

    def search(self, keyword: str) -> list[LibraryPhoto]:
        """Photos tagged with `keyword` (case-insensitive), newest first, as services list them."""
        wanted = keyword.strip().lower()
        matches = [photo for photo in self.photos if wanted in photo.keywords]
        return sorted(matches, key=lambda photo: (photo.created_at, photo.number), reverse=True)

    def size(self, number: int) -> tuple[int, int]:
        """Width and height of a photo as served whole, without rendering it (services report sizes)."""
        photo = self.photos[number]
        return _variant_size(self._paths[photo.base], photo.variant)

    def image(self, number: int) -> Image.Image:
        return _render(self._paths[self.photos[number].base], self.photos[number].variant)

    def encode(self, number: int, width: int | None = None, image_format: str = "JPEG") -> bytes:
        """The photo encoded as a service would serve it, optionally scaled down to `width` pixels."""
        return _encode(self._paths[self.photos[number].base], self.photos[number].variant, width, image_format)


@cache
def base_photo_files() -> dict[str, Path]:
    """Where each base photo lies, as the packages that ship it say through their sample-data APIs. Asked once
    per process, on first use: scikit-learn takes a second or two to import."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    shipped = {path.name: path for path in Path(skimage.data.data_dir).iterdir()}
    shipped |= {Path(name).name: Path(name) for name in load_sample_images().filenames}
    shipped["grace_hopper.jpg"] = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    missing = sorted(name for name in BASE_PHOTOS if not shipped.get(name, Path()).is_file())
    if missing:
        raise FileNotFoundError(f"sample photos missing from the installed packages: {', '.join(missing)}")
    return {name: shipped[name] for name in BASE_PHOTOS}


@lru_cache(maxsize=1024)
def _variant_size(path: Path, variant: int) -> tuple[int, int]:
    # The variant recipe on a blank canvas of the base photo's size: the same geometry, a tenth of the cost.
    with Image.open(path) as source:  # reads the header only
        return _variant_of(Image.new("L", source.size), variant).size


@lru_cache(maxsize=64)
def _render(path: Path, variant: int) -> Image.Image:
    with Image.open(path) as source:
        return _variant_of(source.convert("RGB"), variant)


@cache  # encoded once, then served from memory: at scale the sandbox must not be the bottleneck
def _encode(path: Path, variant: int, width: int | None, image_format: str) -> bytes:
    image = _render(path, variant)
    if width and width < image.width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    options = {"quality": 88} if image_format in ("JPEG", "WEBP") else {}
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()
