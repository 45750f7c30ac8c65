"""Checking folders of images before training on them: :func:`check_images`.

* :mod:`.checker` - :func:`check_images`: walk the class folders of each split, decode every
  file in worker processes, and turn the facts into findings;
* :mod:`.inspection` - what one file is (digest, decodes or not, format, mode, size, EXIF
  orientation, a 16x16 grey thumbnail); imports Pillow, so it is imported only by a check;
* :mod:`.similarity` - near duplicates: thumbnail correlation in blocks, and grouping pairs;
* :mod:`.factcache` - the facts of files already checked, keyed by path, size and mtime;
* :mod:`.report` - :class:`Finding`, :class:`DataReport`: the findings as data, JSON, a table.

Pure Python, NumPy and Pillow: nothing here imports Keras. docs/check.md describes the checks.
"""

from __future__ import annotations

from kzoo.datacheck.checker import check_images
from kzoo.datacheck.report import KINDS, DataReport, Finding

__all__ = ["KINDS", "DataReport", "Finding", "check_images"]
