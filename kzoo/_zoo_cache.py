"""The zoo's weight files on disk: raw downloads and converted weights.

A weight source's raw file lives under ``raw/<model>/<tag>/<variant>-<pinned hash>/``, is found
in the cache layers or downloaded and verified on a miss (:func:`fetch_raw`); its conversion for
a model lives under ``converted/<model>/<tag>/`` in a file whose name carries the variant, the
source file's hash and the converter version. :class:`_Weights` decides, before the model is
built, whether a load reads a cached conversion or fetches the raw file and converts it, and
stores the result. :mod:`kzoo.zoo` re-exports the public names for the command line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kzoo import cache
from kzoo.errors import DownloadError
from kzoo.manifest import WeightSource

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("kzoo")


def raw_relpath(source: WeightSource, variant: str) -> str:
    """Where a source's downloaded file lives, relative to a cache root.

    The folder carries the pinned hash, so a file that changed upstream (same URL, new hash in
    the manifest) is downloaded again instead of being found under the old name.
    """
    file = source.files[variant]
    folder = f"{variant}-{_pinned_id(file) or 'unpinned'}"
    return f"raw/{source.model}/{source.tag}/{folder}/{file.filename}"


def import_command(source: WeightSource, variant: str = "top") -> str:
    """The command that installs a file obtained by other means."""
    flag = " --notop" if variant == "notop" else ""
    return f"kzoo weights import {source.model} {source.tag} FILE{flag}"


def fetch_raw(
    source: WeightSource,
    variant: str = "top",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """The source's raw file from the cache, downloading and verifying it on a miss."""
    from kzoo import download

    file = source.files[variant]
    rel = raw_relpath(source, variant)
    found = cache.find(rel, cache_dir, size=file.size)
    if found is not None:
        return found
    hint = import_command(source, variant)
    if source.import_only:
        expected = cache.cache_root(cache_dir) / rel
        raise DownloadError(
            f"{source.qualified_name} cannot be downloaded by kzoo: {source.import_only}. "
            f"Obtain {file.filename} yourself ({', '.join(file.urls) or 'see docs/zoo.md'}), "
            f"then run: {hint} (it is expected at {expected})"
        )
    if download.is_offline():
        dest = cache.cache_root(cache_dir) / rel
    else:
        dest = cache.writable_path(rel, cache_dir)
    return download.fetch(
        list(file.urls),
        dest,
        size=file.size,
        hashes=file.hashes,
        progress=progress,
        what=f"{source.qualified_name} weights ({variant})",
        import_hint=hint,
    )


class _Weights:
    """Where a source's converted weights come from, decided before the model is built.

    Locating first means a missing or unfetchable file fails before the (slow) build, and
    downloads happen before conversion needs the model's weight slots.
    """

    def __init__(
        self, source: WeightSource, include_top: bool, cache_dir: Any, progress: Any
    ) -> None:
        from kzoo.converters import CONVERTER_VERSION

        self.source, self.cache_dir = source, cache_dir
        variant = "top" if include_top else "notop"
        file_variant = source.variant_for(include_top)
        file = source.files[file_variant]
        self.folder = f"converted/{source.model}/{source.tag}"
        self.stem = f"{source.model}.{source.tag}.{variant}"
        self.suffix = f"{source.format}-v{CONVERTER_VERSION[source.format]}.h5"
        self.ident, self.raw = _pinned_id(file), None
        if self.ident is None:  # unpinned: the sha256 recorded at first download identifies it
            self.raw = cache.find(raw_relpath(source, file_variant), cache_dir, size=file.size)
            self.ident = _recorded_id(self.raw) if self.raw is not None else None
        self.hit = (
            cache.find(f"{self.folder}/{self.stem}.{self.ident}.{self.suffix}", cache_dir)
            if self.ident
            else _only_conversion(self.folder, self.stem, self.suffix, cache_dir)
        )
        if self.hit is None and self.raw is None:
            self.raw = fetch_raw(source, file_variant, cache_dir, progress)
            self.ident = self.ident or _recorded_id(self.raw) or _digest_id(self.raw)

    def arrays(self, slots: Sequence[Any]) -> dict[str, list[np.ndarray]]:
        """The converted arrays: read from the cache, or converted now and stored."""
        from kzoo.converters import convert
        from kzoo.converters.store import load_weights, save_weights

        if self.hit is not None:
            logger.info("loading converted weights %s", self.hit)
            return load_weights(self.hit)
        source, raw = self.source, self.raw
        logger.info("converting %s (%s) for %s", raw, source.format, self.stem)
        arrays = convert(source.format, raw, slots)
        meta = {
            "model": source.model,
            "tag": source.tag,
            "name": self.stem,
            "format": source.format,
            "converter": self.suffix.removesuffix(".h5"),
            "source_file": raw.name,
            "source_id": str(self.ident),
        }
        try:
            target = cache.writable_path(
                f"{self.folder}/{self.stem}.{self.ident}.{self.suffix}", self.cache_dir
            )
        except DownloadError as error:  # a read-only cache holding the raw file: still usable
            logger.warning("converted weights not cached: %s", error)
            return arrays
        save_weights(target, arrays, meta)
        return arrays


def _pinned_id(file: Any) -> str | None:
    pinned = file.pinned
    return f"{pinned[0]}-{pinned[1][:16]}" if pinned else None


def _recorded_id(raw: Path) -> str | None:
    from kzoo import download

    recorded = getattr(download, "recorded_hash", None)
    value = recorded(raw) if recorded else None
    if value is None:
        sidecar = raw.with_name(raw.name + ".sha256")
        try:
            value = sidecar.read_text(encoding="ascii").split()[0]
        except (OSError, IndexError):
            return None
    alg, _, hexdigest = str(value).rpartition(":")
    return f"{alg or 'sha256'}-{hexdigest[:16]}"


def _digest_id(raw: Path) -> str:
    from kzoo import download

    alg, _, hexdigest = download.file_digest(raw, "sha256").partition(":")
    return f"{alg}-{hexdigest[:16]}"


def _only_conversion(folder: str, stem: str, suffix: str, cache_dir: Any) -> Path | None:
    """The single conversion of an unpinned source whose raw file is gone (pre-filled caches)."""
    found: list[Path] = []
    for base in [cache.cache_root(cache_dir), *cache.readonly_layers()]:
        found.extend(sorted((base / folder).glob(f"{stem}.*.{suffix}")))
    return found[0] if len({p.name for p in found}) == 1 else None
