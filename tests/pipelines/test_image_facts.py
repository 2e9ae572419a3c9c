"""Image facts on the tricky corpus and on real photos: every input gives facts without an exception, the
facts are right (formats, modes, geometry as seen, colors as seen), bombs are refused before decoding, and
the gray and sepia tests hold on the whole sandbox library."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from pipelines.image_facts import ImageFacts, extract_facts
from pipelines.lab import lab8_to_npy
from sandbox.kaggle import to_opencv_lab
from sandbox.library import PhotoLibrary
from tests.corpus import ACCEPT, BOMB_SIDE, PHOTOS, encode, jpeg, png_bomb, sepia, tricky_corpus

REPO_ROOT = Path(__file__).resolve().parents[2]
UNDECODABLE = {
    "zero_bytes": "empty file",
    "truncated_jpeg": "truncated JPEG",
    "html_as_jpg": "not an image (looks like HTML)",
    "random_bytes": "not an image (unknown format)",
    "png_bomb": f"decompression bomb: {BOMB_SIDE * BOMB_SIDE} pixels",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return tricky_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def facts(corpus: dict[str, tuple[Path, str]]) -> dict[str, ImageFacts]:
    return {name: extract_facts(path.read_bytes()) for name, (path, _expected) in corpus.items()}


def distance(first: str, second: str) -> int:
    return imagehash.hex_to_hash(first) - imagehash.hex_to_hash(second)


def test_every_corpus_file_gives_facts(corpus: dict[str, tuple[Path, str]], facts: dict[str, ImageFacts]) -> None:
    for name, (path, _expected) in corpus.items():
        assert facts[name].byte_size == path.stat().st_size
        assert facts[name].decodes == (name not in UNDECODABLE), f"{name}: {facts[name].decode_error}"
    for name, reason in UNDECODABLE.items():
        assert facts[name].decode_error == reason
        assert facts[name].width is None and facts[name].phash is None, "nothing measured from what did not decode"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False, "truncated files must fail to load, not load half gray"


def test_files_a_person_would_accept_are_colorful_photos(
    corpus: dict[str, tuple[Path, str]], facts: dict[str, ImageFacts]
) -> None:
    accepted = [name for name, (_path, expected) in corpus.items() if expected == ACCEPT]
    assert len(accepted) >= 10
    for name in accepted:
        fact = facts[name]
        assert fact.decodes and fact.width and fact.width >= 200 and fact.height and fact.height >= 150, name
        assert fact.colorfulness is not None and fact.colorfulness > 20, name
        assert fact.mean_chroma is not None and fact.mean_chroma > 8, name
        assert not fact.is_grayscale and not fact.is_sepia, name
        assert fact.brightness_mean is not None and 15 < fact.brightness_mean < 85, name
    hashes = {name: facts[name].phash or "" for name in accepted}
    closest = min(distance(hashes[a], hashes[b]) for a in accepted for b in accepted if a < b)
    assert closest > 16, "no two accepted corpus files are near duplicates of each other"


def test_formats_modes_and_depths(facts: dict[str, ImageFacts]) -> None:
    expected = {
        "photo": ("JPEG", "RGB", 8),
        "cmyk_jpeg": ("JPEG", "CMYK", 8),
        "sixteen_bit_png": ("PNG", "RGB", 16),  # Pillow reads 48-bit color as 8-bit RGB; the header says 16
        "palette_png_transparent": ("PNG", "P", 8),
        "rgba_png": ("PNG", "RGBA", 8),
        "animated_gif": ("GIF", "P", 8),
        "webp": ("WEBP", "RGB", 8),
        "png_named_jpg": ("PNG", "RGB", 8),
        "npy_lab_sample": ("NPY-LAB", "LAB", 8),
        "grayscale": ("JPEG", "L", 8),
    }
    for name, (image_format, mode, bit_depth) in expected.items():
        assert (facts[name].format, facts[name].mode, facts[name].bit_depth) == (image_format, mode, bit_depth), name
    assert facts["animated_gif"].frames == 3
    assert facts["photo"].frames == 1 and facts["photo"].exif_orientation is None
    assert facts["rgba_png"].has_alpha and facts["palette_png_transparent"].has_alpha
    assert not facts["photo"].has_alpha


def test_geometry_is_as_seen(library: PhotoLibrary, facts: dict[str, ImageFacts]) -> None:
    upright = library.image(PHOTOS["exif_rotated"])
    rotated = facts["exif_rotated_jpeg"]
    assert rotated.exif_orientation == 6
    assert (rotated.width, rotated.height) == upright.size, "stored a quarter turn away; seen upright"
    assert upright.width > upright.height
    assert distance(rotated.phash or "", extract_facts(jpeg(upright)).phash or "") <= 4, "hashed as seen"
    assert (facts["tiny_8x8"].width, facts["tiny_8x8"].height) == (8, 8)
    assert (facts["strip_4000x40"].width, facts["strip_4000x40"].height, facts["strip_4000x40"].aspect) == (
        4000,
        40,
        100.0,
    )


@pytest.mark.parametrize("name", ["cmyk_jpeg", "sixteen_bit_png", "png_named_jpg", "webp"])
def test_other_encodings_measure_like_the_same_photo_in_rgb_jpeg(
    library: PhotoLibrary, facts: dict[str, ImageFacts], name: str
) -> None:
    """A wrong conversion shows: CMYK read as inverted, or 16-bit values read without scaling, would change
    brightness and chroma far beyond what compression does."""
    photo_key = {"cmyk_jpeg": "cmyk", "sixteen_bit_png": "sixteen_bit", "png_named_jpg": "png_named_jpg"}
    reference = extract_facts(jpeg(library.image(PHOTOS[photo_key.get(name, name)])))
    assert facts[name].brightness_mean == pytest.approx(reference.brightness_mean, abs=2.0)
    assert facts[name].mean_chroma == pytest.approx(reference.mean_chroma, abs=2.5)
    assert facts[name].colorfulness == pytest.approx(reference.colorfulness, rel=0.1)
    assert distance(facts[name].phash or "", reference.phash or "") <= 4


def test_sixteen_bit_gray_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    wide = extract_facts(encode(Image.fromarray(ramp), "PNG"))
    narrow = extract_facts(encode(Image.fromarray((ramp // 257).astype(np.uint8)), "PNG"))
    assert (wide.mode, wide.bit_depth) == ("I;16", 16)
    assert wide.is_grayscale
    assert wide.brightness_mean == pytest.approx(narrow.brightness_mean, abs=0.5)  # unscaled, all would be white
    assert wide.brightness_std == pytest.approx(narrow.brightness_std, abs=0.5)


def test_transparency_is_composited_on_white(facts: dict[str, ImageFacts]) -> None:
    invisible = extract_facts(encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "PNG"))
    assert invisible.has_alpha and invisible.is_grayscale
    assert invisible.brightness_mean == pytest.approx(100.0, abs=0.01)
    half = extract_facts(encode(Image.new("LA", (64, 64), (0, 128)), "PNG"))
    assert half.brightness_mean == pytest.approx(53.6, abs=1.0), "black at half opacity over white: mid-gray"
    assert facts["palette_png_transparent"].brightness_mean is not None


def test_gray_sepia_black_and_white(facts: dict[str, ImageFacts]) -> None:
    for name in ("grayscale", "gray_as_rgb", "all_black", "all_white"):
        assert facts[name].is_grayscale and not facts[name].is_sepia, name
        assert facts[name].mean_chroma is not None and facts[name].mean_chroma < 1.0, name
        assert facts[name].colorfulness is not None and facts[name].colorfulness < 1.0, name
    toned = facts["sepia"]
    assert toned.is_sepia and not toned.is_grayscale
    assert toned.mean_chroma is not None and toned.mean_chroma > 10, "a sepia print has visible color..."
    assert toned.hue_spread is not None and toned.hue_spread < 8, "...of one hue"
    assert facts["all_black"].brightness_mean == pytest.approx(0.0, abs=0.5)
    assert facts["all_white"].brightness_mean == pytest.approx(100.0, abs=0.5)
    assert facts["all_white"].brightness_std == pytest.approx(0.0, abs=0.5)


def test_real_photos_are_neither_gray_nor_sepia_and_their_toned_prints_are_sepia(library: PhotoLibrary) -> None:
    """The thresholds against the library: every eleventh photo (all nine scenes, several crops and hue
    turns each), and sepia and cyanotype prints of the same photos, all recompressed as JPEG."""
    for number in range(0, len(library.photos), 11):
        photo = library.image(number)
        for quality in (88, 60):
            seen = extract_facts(jpeg(photo, quality))
            assert not seen.is_grayscale and not seen.is_sepia, f"photo {number} at quality {quality}: {seen}"
            assert seen.colorfulness is not None and seen.colorfulness > 8
        cyanotype = ImageOps.colorize(photo.convert("L"), black=(0, 10, 30), white=(220, 240, 255))
        for print_ in (sepia(photo), cyanotype):
            seen = extract_facts(jpeg(print_, 60))
            assert seen.is_sepia and not seen.is_grayscale, f"toned print of photo {number}: {seen}"


def test_kaggle_lab_sample_matches_its_photo(library: PhotoLibrary) -> None:
    photo = library.image(PHOTOS["npy_lab"])
    sample = extract_facts(lab8_to_npy(to_opencv_lab(photo)))
    square = extract_facts(encode(ImageOps.fit(photo, (224, 224), method=Image.Resampling.LANCZOS), "PNG"))
    assert (sample.format, sample.width, sample.height, sample.decodes) == ("NPY-LAB", 224, 224, True)
    assert sample.mean_chroma is not None and sample.mean_chroma > 8
    assert sample.mean_chroma == pytest.approx(square.mean_chroma, abs=1.0)
    assert sample.brightness_mean == pytest.approx(square.brightness_mean, abs=1.0)
    assert sample.colorfulness == pytest.approx(square.colorfulness, rel=0.05)
    assert distance(sample.phash or "", square.phash or "") <= 4
    assert not sample.is_grayscale and not sample.is_sepia


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((224, 224), np.uint8), "not a Lab sample: numpy array of shape (224, 224) and dtype uint8"),
        (np.zeros((8, 8, 3), np.float32), "not a Lab sample: numpy array of shape (8, 8, 3) and dtype float32"),
        (np.zeros((0, 8, 3), np.uint8), "not a Lab sample: numpy array of shape (0, 8, 3)"),
    ],
)
def test_other_numpy_arrays_are_refused(array: np.ndarray, reason: str) -> None:
    data = lab8_to_npy(array)
    assert extract_facts(data) == ImageFacts(decodes=False, decode_error=reason, byte_size=len(data))


def test_pickled_and_broken_numpy_files_are_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"not": "pixels"}], dtype=object), allow_pickle=True)
    assert (extract_facts(buffer.getvalue()).decode_error or "").startswith("corrupt numpy array")
    cut = lab8_to_npy(np.zeros((224, 224, 3), np.uint8))[:1000]
    assert (extract_facts(cut).decode_error or "").startswith("corrupt numpy array")


def test_duplicates_hash_close_and_unrelated_photos_far(facts: dict[str, ImageFacts]) -> None:
    original = facts["photo"].phash or ""
    assert facts["exact_duplicate"].phash == original
    assert distance(facts["near_duplicate"].phash or "", original) <= 4
    assert (facts["near_duplicate"].width or 0) < (facts["photo"].width or 0)
    assert distance(facts["cmyk_jpeg"].phash or "", original) > 16


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"error": "rate limit exceeded"}', "not an image (looks like JSON)"),
        (b"\xef\xbb\xbf  <HTML><BODY>Moved</BODY></HTML>", "not an image (looks like HTML)"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "not an image (looks like SVG)"),
        (b"%PDF-1.7\n%\xe2\xe3", "not an image (looks like PDF)"),
        (b"PK\x03\x04\x14\x00", "not an image (looks like a zip or gzip archive)"),
        (b"Access denied.\n", "not an image (looks like text)"),
        (b"\x00", "not an image (unknown format)"),
    ],
)
def test_what_non_images_look_like(data: bytes, reason: str) -> None:
    assert extract_facts(data).decode_error == reason


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow's note on flipped TIFF bytes
def test_truncation_and_corruption_never_raise(library: PhotoLibrary) -> None:
    """Every format, cut at many points and with bytes flipped: facts or a reason, never an exception."""
    photo = library.image(PHOTOS["photo"]).resize((160, 120))
    samples = {
        "JPEG": jpeg(photo),
        "PNG": encode(photo, "PNG"),
        "GIF": encode(photo, "GIF", save_all=True, append_images=[photo.rotate(90)]),
        "WEBP": encode(photo, "WEBP"),
        "TIFF": encode(photo, "TIFF"),
        "BMP": encode(photo, "BMP"),
        "NPY-LAB": lab8_to_npy(to_opencv_lab(photo)),
    }
    random = np.random.default_rng(11)
    for image_format, data in samples.items():
        assert extract_facts(data).decodes, image_format
        for cut in (1, 8, 16, 40, len(data) // 3, len(data) // 2, len(data) - 200):
            fact = extract_facts(data[:cut])
            assert fact.decodes or fact.decode_error, f"{image_format} cut at {cut}"
        for _ in range(12):
            damaged = bytearray(data)
            for position in random.integers(0, len(data), size=8):
                damaged[position] ^= 0xFF
            fact = extract_facts(bytes(damaged))
            assert fact.decodes or fact.decode_error
    assert extract_facts(samples["PNG"][: len(samples["PNG"]) // 2]).decode_error == "truncated PNG"


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_is_caught_though_decoded_at_reduced_scale(library: PhotoLibrary, progressive: bool) -> None:
    """A 2560x1920 JPEG is decoded at 1/8 scale (DCT scaling), which still reads every block to the end."""
    large = jpeg(library.image(PHOTOS["photo"]).resize((2560, 1920)), quality=90)
    if progressive:
        large = encode(Image.open(io.BytesIO(large)), "JPEG", quality=90, progressive=True)
    assert extract_facts(large).decodes
    for fraction in (0.3, 0.6, 0.9, 0.99):
        assert extract_facts(large[: int(len(large) * fraction)]).decode_error == "truncated JPEG", fraction


def test_own_pixel_limit_refuses_before_decoding(library: PhotoLibrary) -> None:
    photo = jpeg(library.image(PHOTOS["photo"]))
    width, height = library.image(PHOTOS["photo"]).size
    assert extract_facts(photo, max_pixels=width * height).decodes
    refused = extract_facts(photo, max_pixels=width * height - 1)
    assert refused.decode_error == f"decompression bomb: {width * height} pixels"


BOMB_PROBE = """
import json, resource, sys, time
from pathlib import Path
from pipelines.image_facts import extract_facts
data = Path(sys.argv[1]).read_bytes()
extract_facts(b"")  # imports settled before measuring
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
facts = extract_facts(data)
print(json.dumps({"seconds": time.perf_counter() - started, "reason": facts.decode_error,
                  "grew_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
"""


@pytest.mark.parametrize(
    "side",
    [BOMB_SIDE, 8000],  # Pillow refuses the first itself; the second (64 Mpx) only our 50 Mpx limit stops
)
def test_bombs_are_refused_quickly_without_allocating_the_image(tmp_path: Path, side: int) -> None:
    """Measured in a fresh process, where the peak resident size is the current one: decoding even the
    smaller bomb would need 64 MB as 1-bit pixels and 192 MB as RGB."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(side))
    assert bomb.stat().st_size < 1_000_000
    probe = subprocess.run(
        [sys.executable, "-c", BOMB_PROBE, str(bomb)], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    outcome = json.loads(probe.stdout)
    assert outcome["reason"] == f"decompression bomb: {side * side} pixels"
    assert outcome["seconds"] < 1.0
    assert outcome["grew_kib"] < 20 * 1024
