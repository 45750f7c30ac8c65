"""What one image file is: the digest of its bytes, whether it decodes, its format, mode, size,
EXIF orientation, and a small grey thumbnail to compare it with other images.

The functions here run in worker processes, so they take paths and return plain tuples. They
only read: a file is opened read-only, read once into memory, hashed, and decoded from memory.

A JPEG is decoded at a reduced scale (Pillow's ``draft``: libjpeg still decodes every
coefficient of the stream, so a truncated or corrupt file fails as it would at full size, but
it skips most of the inverse DCT), since the thumbnail is all the check keeps of the pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = [
    "FORMAT_SUFFIXES",
    "IMAGE_SUFFIXES",
    "THUMB_SIDE",
    "VERSION",
    "FileFacts",
    "inspect_file",
    "inspect_files",
]

#: The thumbnail's side: 16x16 grey levels. On MNIST, 8x8 (dHash's size) cannot tell copies
#: from distinct digits; 16x16 can (docs/check.md has the measurements).
THUMB_SIDE = 16
#: Bumped whenever a fact is computed differently, so cached facts of older versions are dropped.
VERSION = 1

#: The file name suffixes each format is expected under (Pillow's format names).
FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "MPO": (".jpg", ".jpeg", ".jpe", ".jfif"),  # camera JPEGs with a second picture
    "PNG": (".png",),
    "GIF": (".gif",),
    "BMP": (".bmp", ".dib"),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
}
#: The suffixes of files the check reads; other files are listed as skipped.
IMAGE_SUFFIXES = frozenset(s for suffixes in FORMAT_SUFFIXES.values() for s in suffixes)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WIDE_MODES = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_ORIENTATION_TAG = 0x0112


class FileFacts(NamedTuple):
    """What the check needs to know about one file.

    Attributes:
        size: The file's size in bytes.
        mtime_ns: Its modification time (``os.stat``), which keys the cache with ``size``.
        digest: BLAKE2b-128 of its bytes, in hex: equal digests are identical files.
        error: Why it does not decode; ``""`` when it does.
        format: Pillow's name for its format (``"JPEG"``, ``"PNG"``, ...); ``""`` when unknown.
        mode: Pillow's mode as stored (``"RGB"``, ``"L"``, ``"CMYK"``, ``"P"``, ``"I;16"``...).
        width: Width in pixels.
        height: Height in pixels.
        bits: Bits per sample: 8, or 16 for a 16-bit PNG or ``I;16`` image, 32 for ``I``/``F``.
        orientation: The EXIF orientation tag; 1 (upright) when absent.
        alpha: Whether it has transparency (an alpha channel, or a palette's transparent entry).
        thumb: ``THUMB_SIDE**2`` grey levels of the whole image; ``b""`` when it does not decode.
    """

    size: int
    mtime_ns: int
    digest: str
    error: str = ""
    format: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    bits: int = 8
    orientation: int = 1
    alpha: bool = False
    thumb: bytes = b""


def inspect_files(paths: list[str]) -> list[FileFacts]:
    """:func:`inspect_file` of each path: the task one worker process runs on a chunk."""
    # A caller may have told Pillow to accept truncated files; the check must not (and leaves
    # the caller's setting as it found it).
    accepting = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        return [inspect_file(path) for path in paths]
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = accepting


def inspect_file(path: str) -> FileFacts:
    """Read, hash and decode one file.

    Args:
        path: The file.

    Returns:
        Its facts; a file that cannot be read (permissions, vanished) or does not decode has
        ``error`` set and no thumbnail.
    """
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as error:
        return FileFacts(0, 0, "", error=f"cannot read: {error.strerror or error}")
    facts = FileFacts(st.st_size, st.st_mtime_ns, hashlib.blake2b(data, digest_size=16).hexdigest())
    if not data:
        return facts._replace(error="empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and decompression-size notes are not faults
            return _decode(data, facts)
    except UnidentifiedImageError:
        return facts._replace(error="not an image: Pillow recognises no image format in it")
    # Any exception a decoder raises on this file is the finding itself: Pillow's plugins raise
    # OSError, SyntaxError, ValueError, EOFError, struct.error, ... on damaged input.
    except Exception as error:
        return facts._replace(error=f"does not decode: {type(error).__name__}: {error}")


def _decode(data: bytes, facts: FileFacts) -> FileFacts:
    with Image.open(io.BytesIO(data)) as image:
        fmt, mode, (width, height) = image.format or "", image.mode, image.size
        bits = _bits(mode, data)
        orientation = _orientation(image)
        alpha = mode in _ALPHA_MODES or "transparency" in image.info
        if fmt in ("JPEG", "MPO"):
            image.draft("L" if mode in ("L", "RGB") else None, (2 * THUMB_SIDE, 2 * THUMB_SIDE))
        image.load()  # decodes every byte: a truncated file fails here
        thumb = _grey(image).resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX).tobytes()
    return facts._replace(
        format=fmt,
        mode=mode,
        width=width,
        height=height,
        bits=bits,
        orientation=orientation,
        alpha=alpha,
        thumb=thumb,
    )


def _bits(mode: str, data: bytes) -> int:
    if mode in _WIDE_MODES:
        return _WIDE_MODES[mode]
    # Pillow reads a 16-bit RGB PNG as 8-bit RGB; the header still says 16 (IHDR bit depth).
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) > 24:
        return data[24]
    return 8


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block says nothing about the pixels
        return 1


def _grey(image: Image.Image) -> Image.Image:
    if image.mode in _WIDE_MODES:
        # 16- and 32-bit values would clip to white in Pillow's own conversion: stretch them
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / max(high - low, 1e-12))
        return Image.fromarray(scaled.round().astype(np.uint8))
    if image.mode in ("L", "RGB", "RGBA", "P", "PA", "LA", "1", "CMYK", "YCbCr", "RGBX"):
        return image.convert("L")
    return image.convert("RGB").convert("L")  # LAB, HSV: Pillow converts them via RGB only
