"""Decoding one picture from an untrusted file: an image to RGB, a human map to a mask,
with Pillow's decompression-bomb guard turned into one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError, first_line
from harness.limits import IMAGE_ASPECT, IMAGE_PIXELS


def check_image_shape(height: int, width: int, where) -> None:
    """Refuse an image over the pixel limit, or with one side too many times the other:
    the measures' work and memory grow with both (the guided blur pads by a radius
    scaled from the height), and a compressed file's size bounds neither."""
    pixels, aspect = IMAGE_PIXELS.value(), IMAGE_ASPECT.value()
    if height * width > pixels:
        raise HarnessError(f"{where}: a {width}x{height} image has {height * width:,} pixels, "
                           f"over the limit of {pixels:,} per image ({IMAGE_PIXELS.env}); "
                           "resize it first")
    if max(height, width) > aspect * min(height, width):
        raise HarnessError(f"{where}: a {width}x{height} image has one side over {aspect} "
                           f"times the other ({IMAGE_ASPECT.env}); crop or pad it first")


def _decode(file: Path, convert, what: str = "image"):
    """Open one picture and ``convert`` it (a PIL image -> PIL image) safely.

    Images over Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``,
    89,478,485 pixels by default) are refused, as are truncated and unreadable files, and
    images that :func:`check_image_shape` refuses (before any pixel is decoded). An EXIF
    orientation is applied (``ImageOps.exif_transpose``): the picture is read upright, as
    a viewer shows it and as a person marked it.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as im:
                check_image_shape(im.height, im.width, file)
                im.load()
                return convert(ImageOps.exif_transpose(im))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise HarnessError(f"{file}: refused: larger than Pillow's decompression-bomb limit "
                           f"of {Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise HarnessError(f"{file}: cannot read {what} ({first_line(exc)})") from None


def read_image(file: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image to ``(H, W, 3) uint8`` RGB (see :func:`_decode` for what is
    refused).

    Conversions: an EXIF orientation is applied; grey, palette, CMYK and YCbCr become
    RGB; 16-bit images are scaled to 8 bits (value / 257); transparency is composited
    over white, as a viewer shows it.
    """
    from PIL import Image

    rgb = _decode(file, _to_rgb)
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(rgb, np.uint8)


def _to_rgb(im):
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(im, np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or wide.max() > 255 else 255.0
        grey = np.clip(np.round(wide * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def read_mask(file: Path, size: tuple[int, int]) -> np.ndarray:
    """A human map as ``(H, W) bool`` (non-zero = marked), resized (nearest) to ``size``."""
    from PIL import Image

    grey = _decode(file, lambda im: im.convert("L"), "mask")
    if grey.size != (size[1], size[0]):
        grey = grey.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(grey) > 0
