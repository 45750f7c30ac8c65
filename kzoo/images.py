"""Reading image files: one place that turns a bad file into a clear :class:`ImageError`.

Pillow is an optional dependency (the ``plot`` and ``examples`` extras), imported only when an
image is read, so that the modules importing this one stay light.
"""

from __future__ import annotations

import os
from typing import Any

from kzoo.errors import ImageError

__all__ = ["open_image"]


def open_image(path: str | os.PathLike[str], mode: str = "RGB") -> Any:
    """The decoded image at ``path`` as a Pillow image in ``mode`` (``"RGB"`` or ``"L"``).

    Raises:
        ImageError: Pillow is not installed, or the file is missing, damaged or not an image.
    """
    try:
        from PIL import Image  # optional dependency: only reading images needs it
    except ImportError:
        raise ImageError(
            f"reading {os.fspath(path)} needs Pillow: pip install pillow (or kzoo[plot])"
        ) from None
    try:
        with Image.open(path) as image:
            return image.convert(mode)  # decodes now: a truncated file fails here, not later
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(
            f"cannot read image {os.fspath(path)}: {error}. Give a PNG, JPEG or other file "
            "Pillow reads"
        ) from None
