"""Colorize any photo with a trained generator, keeping every detail of the original.

The network sees a small copy (its training size, aspect ratio kept by padding, never stretched) and
predicts the chroma a/b there. Chroma carries little detail, so it is upsampled smoothly to the original
size and joined with the original, full-resolution lightness L: a 4000x3000 photo comes back 4000x3000,
as sharp as it went in, only colored.

    colorflow colorize old/*.jpg family-album/ -o colorized/ --model models:/colorizer@champion

or from Python:

    colorizer = load_colorizer("models:/colorizer@champion")
    colorizer.colorize(Image.open("grandma.jpg")).save("grandma-color.png")

Inputs: JPEG, PNG, WebP, TIFF (and BMP, GIF); RGB, grayscale, RGBA, CMYK, 16-bit; EXIF orientation is
honoured. Images over `MAX_PIXELS` are refused with a clear error before they are decoded.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from tqdm import tqdm

from models.data import from_network, to_network
from models.networks import NetworkConfig, build_generator, colorize_ab
from pipelines.image_facts import DECODED_FORMATS, as_rgb
from pipelines.lab import fit_to_gamut, lab8_to_rgb, neutral_lab8, rgb_to_lab8, scale_chroma
from pipelines.settings import MAX_PIXELS

logger = logging.getLogger(__name__)

INPUT_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
DEFAULT_MODEL = "models:/colorizer@champion"
MAX_STRENGTH = 1.5  # chroma scale: beyond it, colors turn garish and mostly fall out of gamut
DESCRIPTION = __doc__.split("\n\n")[0]


class ColorizeError(ValueError):
    """An input that cannot be colorized (not an image, too large, unreadable), with the reason."""


def open_photo(source: Path | bytes) -> Image.Image:
    """An 8-bit RGB image as a person sees it: EXIF orientation applied, alpha on white, CMYK and 16-bit
    converted. Refuses anything over `MAX_PIXELS` from its header, before decoding a pixel."""
    name = source.name if isinstance(source, Path) else "image"
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
        with Image.open(io.BytesIO(data), formats=DECODED_FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ColorizeError(
                    f"{name}: {image.width}x{image.height} is over the {MAX_PIXELS:,} pixel limit: refused as a "
                    "likely decompression bomb"
                )
            image.load()
            return as_rgb(ImageOps.exif_transpose(image)).convert("RGB")
    except ColorizeError:
        raise
    except Image.DecompressionBombError as error:
        raise ColorizeError(f"{name}: refused as a likely decompression bomb ({error})") from error
    except UnidentifiedImageError as error:
        raise ColorizeError(f"{name}: cannot read it as an image (not a JPEG, PNG, WebP, TIFF, BMP or GIF)") from error
    except (OSError, ValueError) as error:
        raise ColorizeError(f"{name}: cannot read it as an image ({error})") from error


class Colorizer:
    """A generator and the square size it was trained at (a multiple of 2**num_downs)."""

    def __init__(self, generator: nn.Module, size: int = 256, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.generator = generator.to(self.device)
        self.size = size

    def colorize(self, image: Image.Image, strength: float = 1.0) -> Image.Image:
        """`image` (any size, any mode PIL opens) in color, same size, its own lightness untouched; `strength`
        scales the predicted chroma (0 gray, 1 as predicted, up to `MAX_STRENGTH`)."""
        lab8 = rgb_to_lab8(np.asarray(image.convert("RGB")))
        return Image.fromarray(lab8_to_rgb(with_chroma(lab8, self.chroma(lab8[..., 0]), strength)))

    @torch.no_grad()
    def chroma(self, lightness: np.ndarray) -> np.ndarray:
        """The predicted a/b (float32, stored scale) for a photo's lightness (H, W), at the network's scale
        of the photo: kept small, so that a new strength, or an average over a clip's frames, costs no
        network run and little memory; `with_chroma` brings it to full size."""
        small, (top, left, inner_h, inner_w) = self._network_input(lightness)
        network_l, _ = to_network(torch.from_numpy(small).unsqueeze(0).to(self.device))
        ab = from_network(network_l, colorize_ab(self.generator, network_l))[0, ..., 1:]
        return ab[top : top + inner_h, left : left + inner_w].astype(np.float32)

    def _network_input(self, lightness: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The L channel scaled so its long side is `size`, padded (edge pixels repeated) to a square,
        as an (size, size, 3) Lab8 array with neutral chroma; and where the photo sits in it."""
        height, width = lightness.shape
        scale = self.size / max(height, width)
        inner_h, inner_w = max(1, round(height * scale)), max(1, round(width * scale))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        scaled = cv2.resize(lightness, (inner_w, inner_h), interpolation=interpolation)
        top, left = (self.size - inner_h) // 2, (self.size - inner_w) // 2
        padded = cv2.copyMakeBorder(
            scaled, top, self.size - inner_h - top, left, self.size - inner_w - left, cv2.BORDER_REPLICATE
        )
        return neutral_lab8(self.size, self.size, lightness=padded), (top, left, inner_h, inner_w)


def with_chroma(lab8: np.ndarray, chroma: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """A photo's own Lab8 lightness joined with its predicted chroma (any smaller size, see
    `Colorizer.chroma`) scaled by `strength`, as Lab8. Chroma carries little detail, so a smooth upsampling
    loses nothing a person sees."""
    if not 0 <= strength <= MAX_STRENGTH:
        raise ColorizeError(f"strength {strength} is outside 0 to {MAX_STRENGTH}")
    height, width = lab8.shape[:2]
    full = cv2.resize(scale_chroma(chroma, strength), (width, height), interpolation=cv2.INTER_CUBIC)
    colored = lab8.copy()
    colored[..., 1:] = np.clip(np.rint(full), 0, 255)
    # Where a predicted color has no RGB equivalent, clipping would change the photo's own lightness.
    return fit_to_gamut(colored)


def colorizer_from_state(state: dict, config: NetworkConfig, size: int, device: str = "cpu") -> Colorizer:
    """A colorizer from a generator state dict (a training checkpoint's, or a logged model's)."""
    generator = build_generator(config)
    generator.load_state_dict(state)
    return Colorizer(generator, size=size, device=device)


def load_colorizer(model_uri: str, device: str = "cpu") -> Colorizer:
    """The colorizer behind an MLflow model URI (`models:/colorizer@champion`, `runs:/<id>/colorizer`)."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().colorizer_on(device)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, and the images inside folders (recursively, sorted)."""
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in INPUT_SUFFIXES and p.is_file())
        elif path.exists():
            found.append(path)
        else:
            raise ColorizeError(f"{path}: no such file or folder")
    return found


def colorize_files(
    colorizer: Colorizer, inputs: list[Path], output: Path, progress: bool = True, strength: float = 1.0
) -> list[Path]:
    """Colorize each input into `output` (a folder) as PNG; a bad input is reported and skipped."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(inputs, desc="colorizing", unit="photo", disable=not progress):
        try:
            colored = colorizer.colorize(open_photo(path), strength)
        except ColorizeError as error:
            logger.error("%s", error)
            continue
        target = output / f"{path.stem}.png"
        colored.save(target)
        written.append(target)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The colorize command's options (`colorflow colorize`, `python -m models.colorize`)."""
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="photos, folders of photos, or film clips"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="folder for the colorized PNGs (and MP4s); for one clip, the .mp4 file to write",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="MLflow model URI or alias (default: %(default)s)")
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help=f"chroma scale, 0 (gray) to {MAX_STRENGTH} (default: %(default)s, as predicted)",
    )
    parser.add_argument(
        "--smoothing",
        type=float,
        default=None,
        help="clips: weight of the running color average against each new frame's, 0 to below 1 (default 0.7)",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda (default: %(default)s)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Colorize every input into the output; 1 when some could not be, 2 when none were found."""
    import mlflow

    from models import video
    from pipelines.settings import get_settings

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    try:
        inputs = expand_inputs(args.inputs)
        if not 0 <= args.strength <= MAX_STRENGTH:
            raise ColorizeError(f"--strength {args.strength} is outside 0 to {MAX_STRENGTH}")
    except ColorizeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    clips = [path for path in inputs if path.suffix.lower() in video.VIDEO_SUFFIXES]
    photos = [path for path in inputs if path not in clips]
    colorizer = load_colorizer(args.model, args.device)
    written = colorize_files(colorizer, photos, args.output, strength=args.strength) if photos else []
    if photos:
        print(f"{len(written)} of {len(photos)} photos colorized into {args.output}")
    smoothing = video.DEFAULT_SMOOTHING if args.smoothing is None else args.smoothing
    single_file = len(clips) == 1 and not photos and args.output.suffix.lower() == ".mp4"
    for clip in clips:
        target = args.output if single_file else args.output / f"{clip.stem}.mp4"
        try:
            report = video.colorize_clip_with_progress(colorizer, clip, target, args.strength, smoothing)
        except ColorizeError as error:
            logger.error("%s", error)
            continue
        written.append(target)
        print(
            f"{clip.name}: {report.frames} frames ({report.width}x{report.height}, {report.fps:g} fps"
            f"{', sound kept' if report.audio else ''}) colorized into {target}; scene cuts: {report.scene_cuts},"
            f" flicker {report.flicker}"
        )
    return 0 if len(written) == len(inputs) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.colorize", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
