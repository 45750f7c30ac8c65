"""The zoo's weight files on disk: raw downloads, converted weights, imports and checks.

A weight source's raw file lives under ``raw/<model>/<tag>/<variant>-<pinned hash>/``; it is
found in the cache layers or downloaded and verified on a miss (:func:`fetch_raw`), or installed
from a copy obtained elsewhere (:func:`import_weights`, which reads it with its format's own
reader first). Its conversion for a model lives under ``converted/<model>/<tag>/`` in a file
whose name carries the variant, the source file's hash and the converter version.
:class:`WeightsPlan` decides, before the model is built, whether a load reads a cached
conversion or fetches the raw file and converts it, and stores the result.
:func:`verify_cached`, :func:`cached_files` and :func:`purge` answer the ``weights``
commands; they return data and print nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kzoo import converters, download
from kzoo.errors import ChecksumError, ConversionError, DownloadError, Hint, KzooError
from kzoo.zoo import names
from kzoo.zoo.entries import FileEntry, WeightSource
from kzoo.zoo.manifest import ManifestLike
from kzoo.zoo.store import load_weights, save_weights

__all__ = [
    "CachedFile",
    "ImportResult",
    "VerifyResult",
    "WeightsPlan",
    "cached_files",
    "fetch_raw",
    "fetch_weights",
    "import_hint",
    "import_weights",
    "purge",
    "raw_relpath",
    "verify_cached",
    "weights_path",
]

logger = logging.getLogger("kzoo")

PathLike = str | os.PathLike[str]


def raw_relpath(source: WeightSource, variant: str) -> str:
    """Where a source's downloaded file lives, relative to a cache root.

    The folder carries the pinned hash, so a file that changed upstream (same URL, new hash in
    the manifest) is downloaded again instead of being found under the old name.
    """
    file = source.files[variant]
    folder = f"{variant}-{_pinned_id(file) or 'unpinned'}"
    return f"raw/{source.model}/{source.tag}/{folder}/{file.filename}"


def import_hint(source: WeightSource, variant: str = "top") -> Hint:
    """The fix for a source file kzoo cannot download: install a copy obtained elsewhere."""
    notop = ", notop=True" if variant == "notop" else ""
    return Hint(
        "import_weights",
        f"install a copy you obtained elsewhere with "
        f"kzoo.zoo.import_weights({source.qualified_name!r}, FILE{notop})",
        {"model": source.model, "tag": source.tag, "variant": variant},
    )


def fetch_raw(
    source: WeightSource,
    variant: str = "top",
    cache_dir: PathLike | None = None,
    progress: bool | None = None,
) -> Path:
    """The source's raw file from the cache, downloading and verifying it on a miss.

    Raises:
        DownloadError: The file cannot be had (OfflineError with ``KZOO_OFFLINE=1``); the
            error carries the import hint.
    """
    file = source.files[variant]
    rel = raw_relpath(source, variant)
    hint = import_hint(source, variant)
    if source.import_only and download.find(rel, cache_dir, size=file.size) is None:
        expected = download.cache_root(cache_dir) / rel
        raise DownloadError(
            f"{source.qualified_name} cannot be downloaded by kzoo: {source.import_only}. "
            f"Obtain {file.filename} yourself ({', '.join(file.urls) or 'see docs/zoo.md'}); "
            f"it is expected at {expected}",
            hints=[hint],
        )
    return download.fetch_cached(
        rel,
        list(file.urls),
        root=cache_dir,
        size=file.size,
        hashes=file.hashes,
        progress=progress,
        what=f"{source.qualified_name} weights ({variant})",
        hints=[hint],
    )


def fetch_weights(
    name: str,
    tag: str | None = None,
    *,
    notop: bool = False,
    manifest: ManifestLike | None = None,
    cache_dir: PathLike | None = None,
    progress: bool | None = None,
) -> Path:
    """Download and verify a weight source's file (or find it cached); see :func:`fetch_raw`.

    Raises:
        UnknownNameError: An unknown model or tag.
        KzooError: ``notop`` for a source with one file only.
        DownloadError: The file cannot be had; the error carries the import hint.
    """
    source = names.source(name, tag, manifest)
    variant = "notop" if notop else "top"
    if variant not in source.files:
        raise KzooError(
            f"{source.qualified_name} has no notop file; load it with include_top=False and "
            "kzoo converts the conv layers of the top file"
        )
    return fetch_raw(source, variant, cache_dir, progress)


def weights_path(
    name: str,
    tag: str | None = None,
    *,
    notop: bool = False,
    manifest: ManifestLike | None = None,
    cache_dir: PathLike | None = None,
) -> Path:
    """Where a weight source's file is cached, or where it would be (no download)."""
    source = names.source(name, tag, manifest)
    return source_path(source, "notop" if notop and "notop" in source.files else "top", cache_dir)


def source_path(
    source: WeightSource, variant: str = "top", cache_dir: PathLike | None = None
) -> Path:
    """Where one file of ``source`` is cached, or where it would be (no download)."""
    rel = raw_relpath(source, variant)
    return download.find(rel, cache_dir) or download.cache_root(cache_dir) / rel


# -- a file obtained elsewhere --------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_weights` installed.

    Attributes:
        path: The file in the cache.
        digest: Its sha256 (``"sha256:<hex>"``).
        pinned: Whether a pinned hash was checked; when not, ``digest`` was recorded beside
            the file and later downloads and checks are held to it.
        format: The source's format.
        layers: How many layers with weights its format's reader found.
        name: The name that loads these weights (``"vgg19.lasagne"``).
    """

    path: Path
    digest: str
    pinned: bool
    format: str
    layers: int
    name: str


def import_weights(
    name: str,
    file: PathLike,
    *,
    tag: str | None = None,
    notop: bool = False,
    manifest: ManifestLike | None = None,
    cache_dir: PathLike | None = None,
) -> ImportResult:
    """Verify a weights file obtained by other means and install it in the cache.

    The file must have the manifest's size and pinned hash, and its format's own reader (the
    safe unpickler for a pickle; the HDF5, protobuf or safetensors structure for the others)
    must accept it, exactly as a load would, before anything is written to the cache.

    Args:
        name: The weight source it is a copy of, ``"vgg19.lasagne"`` (or ``"vgg19"`` with
            ``tag``, or alone for the model's default tag).
        file: The file.
        tag: The weights tag, when ``name`` does not carry it.
        notop: The file is the source's variant without the classifier.
        manifest: A user manifest merged over the built-in one.
        cache_dir: The writable cache root.

    Raises:
        UnknownNameError: An unknown model or tag.
        KzooError: No such file, or the source has no such variant.
        ChecksumError: Size or pinned hash differs.
        UnsafePickleError, ConversionError: The format's reader refuses the file.
        DownloadError: The cache cannot be written.
    """
    source = names.source(name, tag, manifest)
    variant = "notop" if notop else "top"
    path = Path(file).expanduser()
    entry = source.files.get(variant)
    if entry is None:
        raise KzooError(f"{source.qualified_name} has no {variant} file in the manifest")
    if not path.is_file():
        raise KzooError(f"no such file: {path}")
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise ChecksumError(
            f"{path} is not {source.qualified_name} ({variant}): expected {entry.size} bytes. "
            f"Received: {size} bytes"
        )
    pinned = {alg: value for alg, value in entry.hashes.items() if value}
    seen = {alg: download.file_digest(path, alg) for alg in {*pinned, "sha256"}}
    wrong = [alg for alg, value in pinned.items() if seen[alg] != f"{alg}:{value}"]
    if wrong:
        got = [f"{alg}: expected {pinned[alg]}, got {seen[alg][len(alg) + 1 :]}" for alg in wrong]
        raise ChecksumError(
            f"{path} is not the {source.qualified_name} ({variant}) file the manifest pins: "
            + "; ".join(got)
        )
    layers = converters.inspect(source.format, path)
    digest = seen["sha256"]
    dest = download.writable_path(raw_relpath(source, variant), cache_dir)
    with download.atomic_write(dest) as tmp:
        shutil.copyfile(path, tmp)
    if not pinned:
        with download.atomic_write(_sidecar(dest)) as tmp:
            tmp.write_text(digest + "\n")
    logger.info("imported %s as %s (%s)", path, dest, digest)
    return ImportResult(
        dest, digest, bool(pinned), source.format, len(layers), source.qualified_name
    )


# -- what is cached, checked again ----------------------------------------------------------


@dataclass(frozen=True)
class CachedFile:
    """One file of a weight source and where it is cached.

    Attributes:
        source: The weight source.
        variant: ``"top"`` or ``"notop"``.
        file: Its manifest entry (size, pinned hashes).
        path: The cached copy, or None when it is not cached.
    """

    source: WeightSource
    variant: str
    file: FileEntry
    path: Path | None


def cached_files(sources: Iterable[WeightSource], cache_dir: PathLike | None = None):
    """One :class:`CachedFile` per file of ``sources``, cached or not (one stat each)."""
    return [
        CachedFile(source, variant, file, download.find(raw_relpath(source, variant), cache_dir))
        for source in sources
        for variant, file in source.files.items()
    ]


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking one cached file again.

    Attributes:
        cached: The file checked.
        checked: What it was compared with (``"size, md5"``, ``"sha256 recorded at import"``).
        error: Why it failed, or None when it is fine.
    """

    cached: CachedFile
    checked: str
    error: KzooError | None


def verify_cached(
    sources: Iterable[WeightSource], cache_dir: PathLike | None = None
) -> list[VerifyResult]:
    """Re-hash every cached file of ``sources`` and read it with its format's reader.

    Returns:
        One result per cached file; files that are not cached are skipped.
    """
    results = []
    for cached in cached_files(sources, cache_dir):
        if cached.path is None:
            continue
        file = cached.file
        pins = [alg for alg, value in file.hashes.items() if value]
        checked = (["size"] if file.size is not None else []) + pins
        if not pins and _sidecar(cached.path).exists():
            checked.append("sha256 recorded at first download or import")
        checked.append(f"{cached.source.format} structure")
        try:
            download.verify(cached.path, file.hashes, size=file.size)
            converters.inspect(cached.source.format, cached.path)
            error = None
        except KzooError as problem:
            error = problem
        results.append(VerifyResult(cached, ", ".join(checked), error))
    return results


def purge(
    sources: Iterable[WeightSource], cache_dir: PathLike | None = None, *, dry_run: bool = True
) -> list[Path]:
    """Delete the raw and converted files of ``sources`` from the writable cache root.

    Args:
        sources: The weight sources whose files go.
        cache_dir: The writable cache root.
        dry_run: Only list what would be deleted.

    Returns:
        The files deleted (or that would be).
    """
    root = download.cache_root(cache_dir)
    folders = sorted(
        {root / kind / s.model / s.tag for s in sources for kind in ("raw", "converted")}
    )
    targets = [
        p for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()
    ]
    if not dry_run:
        for folder in folders:
            if folder.is_dir():
                shutil.rmtree(folder)
    return targets


# -- converted weights ----------------------------------------------------------------------


class WeightsPlan:
    """Where a source's converted weights come from, decided before the model is built.

    Locating first means a missing or unfetchable file fails before the (slow) build, and
    downloads happen before conversion needs the model's weight slots.

    Args:
        source: The weight source.
        include_top: Whether the model keeps its classifier.
        cache_dir: The writable cache root.
        progress: Show download progress bars (default: on a terminal).
        others: The model's other weight sources; a failed download names those installed.

    Without the classifier, a source's cached top file serves when its notop file is not
    cached: the convolutions are the same, and the download is saved.
    """

    def __init__(
        self,
        source: WeightSource,
        include_top: bool,
        cache_dir: PathLike | None = None,
        progress: bool | None = None,
        others: Iterable[WeightSource] = (),
    ) -> None:
        self.source, self.cache_dir = source, cache_dir
        variant = "top" if include_top else "notop"
        version = converters.FORMATS[source.format].version
        self.folder = f"converted/{source.model}/{source.tag}"
        self.stem = f"{source.model}.{source.tag}.{variant}"
        self.suffix = f"{source.format}-v{version}.h5"
        file_variant = source.variant_for(include_top)
        self._locate(file_variant)
        if self.hit is None and self.raw is None and file_variant == "notop":
            # the classifier's file holds the same convolutions: a cached one saves a download
            top_size = source.files["top"].size
            if download.find(raw_relpath(source, "top"), cache_dir, size=top_size) is not None:
                file_variant = "top"
                self._locate(file_variant)
        if self.hit is None and self.raw is None:
            try:
                self.raw = fetch_raw(source, file_variant, cache_dir, progress)
            except DownloadError as error:
                installed = _installed_instead(source, others, include_top, cache_dir)
                error.hints = (*installed, *error.hints)
                raise
            self.ident = self.ident or _recorded_id(self.raw) or _digest_id(self.raw)

    def _locate(self, file_variant: str) -> None:
        """Find the converted weights or the raw file of ``file_variant`` in the caches."""
        file = self.source.files[file_variant]
        self.ident, self.raw = _pinned_id(file), None
        if self.ident is None:  # unpinned: the sha256 recorded at first download identifies it
            rel = raw_relpath(self.source, file_variant)
            self.raw = download.find(rel, self.cache_dir, size=file.size)
            self.ident = _recorded_id(self.raw) if self.raw is not None else None
        self.hit = (
            download.find(f"{self.folder}/{self.stem}.{self.ident}.{self.suffix}", self.cache_dir)
            if self.ident
            else _only_conversion(self.folder, self.stem, self.suffix, self.cache_dir)
        )

    def arrays(self, slots: Sequence[converters.WeightSlot]) -> dict[str, list[np.ndarray]]:
        """The converted arrays: read from the cache, or converted now and stored."""
        if self.hit is not None:
            logger.info("loading converted weights %s", self.hit)
            return load_weights(self.hit)
        source, raw = self.source, self.raw
        logger.info("converting %s (%s) for %s", raw, source.format, self.stem)
        try:
            arrays = converters.convert(source.format, raw, slots)
        except ConversionError as error:
            if error.file_is_bad:
                self._discard_raw(error)
            raise
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
            target = download.writable_path(
                f"{self.folder}/{self.stem}.{self.ident}.{self.suffix}", self.cache_dir
            )
        except DownloadError as error:  # a read-only cache holding the raw file: still usable
            logger.warning("converted weights not cached: %s", error)
            return arrays
        save_weights(target, arrays, meta)
        return arrays

    def _discard_raw(self, error: ConversionError) -> None:
        """Delete a cached download its own reader refuses, so no bad file is kept.

        Only from the writable root: read-only layers are someone else's to fix. The error's
        message then says so, and the next load downloads the file again.
        """
        raw = self.raw
        if raw is None or not _inside(raw, download.cache_root(self.cache_dir)):
            return
        for path in (raw, _sidecar(raw)):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            raw.parent.rmdir()  # the <variant>-<hash> folder, when nothing else is in it
        error.args = (f"{error.args[0]}\nThe cached copy {raw} was deleted; the next load "
                      "downloads it again.", *error.args[1:])  # fmt: skip


def _installed_instead(
    source: WeightSource,
    others: Iterable[WeightSource],
    include_top: bool,
    cache_dir: PathLike | None,
) -> list[Hint]:
    """Hints naming the model's other weights that are in the cache, for a failed fetch.

    A bare model name always means its default weights, whatever happens to be cached, so
    that a name gives the same model everywhere; the error says which names would load now.
    """
    installed = []
    for other in others:
        if other.qualified_name == source.qualified_name:
            continue
        rel = raw_relpath(other, other.variant_for(include_top))
        top = raw_relpath(other, "top")
        if download.find(rel, cache_dir) or download.find(top, cache_dir):
            installed.append(other.qualified_name)
    return [
        Hint(
            "use_installed",
            f"{name} weights are installed: load them with kzoo.load({name!r})",
            {"name": name},
        )
        for name in installed
    ]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _sidecar(raw: Path) -> Path:
    return raw.with_name(raw.name + ".sha256")


def _pinned_id(file: FileEntry) -> str | None:
    pinned = file.pinned
    return f"{pinned[0]}-{pinned[1][:16]}" if pinned else None


def _recorded_id(raw: Path) -> str | None:
    try:
        value = _sidecar(raw).read_text(encoding="ascii").split()[0]
    except (OSError, IndexError):
        return None
    alg, _, hexdigest = value.rpartition(":")
    return f"{alg or 'sha256'}-{hexdigest[:16]}"


def _digest_id(raw: Path) -> str:
    alg, _, hexdigest = download.file_digest(raw, "sha256").partition(":")
    return f"{alg}-{hexdigest[:16]}"


def _only_conversion(folder: str, stem: str, suffix: str, cache_dir: Any) -> Path | None:
    """The single conversion of an unpinned source whose raw file is gone (pre-filled caches)."""
    found: list[Path] = []
    for base in [download.cache_root(cache_dir), *download.readonly_layers()]:
        found.extend(sorted((base / folder).glob(f"{stem}.*.{suffix}")))
    return found[0] if len({p.name for p in found}) == 1 else None
