"""The weights manifest: which models exist, where their weights live, how to check them.

The built-in manifest ships inside the package (``kzoo/weights_manifest.json``). Users add
models and sources, or point files at their own mirrors, with manifests of their own, merged
on top in this order: built-in, then each file in ``KZOO_MANIFEST`` (``os.pathsep``-separated),
then the ``manifest=`` argument. Merging is by key: objects merge recursively, every other
value (lists included) replaces the one below it. In user manifests a URL may be a plain path,
resolved against the manifest's own folder.

Pure Python on purpose: ``kzoo models`` reads the manifest without importing Keras.
The schema is documented in docs/zoo.md; kzoo._manifest_schema validates it.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from kzoo.errors import ManifestError, UnknownNameError

__all__ = [
    "CLASS_FORMATS",
    "EMBEDDED_CLASSES",
    "FORMATS",
    "PREPROCESSING_MODES",
    "VARIANTS",
    "ClassIndexEntry",
    "FileEntry",
    "Manifest",
    "ModelEntry",
    "WeightSource",
    "builtin_manifest_path",
    "load_manifest",
    "merge_manifests",
    "parse_manifest",
]

SCHEMA_VERSION = 1
FORMATS = ("caffe", "keras_h5", "lasagne", "safetensors_vgg")
PREPROCESSING_MODES = ("caffe", "none", "torch")
CLASS_FORMATS = ("keras_class_index",)
VARIANTS = ("top", "notop")
EMBEDDED_CLASSES = "embedded"  # class names read from the weights file itself (Lasagne)
FORMATS_WITH_CLASSES = ("lasagne",)
ENV_VAR = "KZOO_MANIFEST"

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")

ManifestLike = Union[str, os.PathLike, Mapping[str, Any], "Manifest"]


@dataclass(frozen=True)
class FileEntry:
    """One downloadable file: ordered mirror URLs, expected size and pinned hashes."""

    urls: tuple[str, ...]
    size: int | None
    md5: str | None
    sha256: str | None

    @property
    def hashes(self) -> dict[str, str | None]:
        """The hashes in the form ``kzoo.download.fetch`` takes."""
        return {"md5": self.md5, "sha256": self.sha256}

    @property
    def pinned(self) -> tuple[str, str] | None:
        """``(algorithm, hex)`` of the strongest pinned hash, or None when nothing is pinned."""
        if self.sha256:
            return ("sha256", self.sha256)
        if self.md5:
            return ("md5", self.md5)
        return None

    @property
    def filename(self) -> str:
        """The file name the cache stores it under: the last path part of the first URL."""
        if not self.urls:
            return "weights"
        name = self.urls[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return name or "weights"


@dataclass(frozen=True)
class WeightSource:
    """One set of pretrained weights for a model (a "tag": imagenet, caffe, tv_in1k, ...)."""

    model: str
    tag: str
    format: str
    preprocessing: str
    files: Mapping[str, FileEntry]
    classes: str | None = None
    license: str | None = None
    description: str = ""
    import_only: str | None = None

    @property
    def qualified_name(self) -> str:
        """The timm-style name, ``"vgg19.imagenet"``."""
        return f"{self.model}.{self.tag}"

    def variant_for(self, include_top: bool) -> str:
        """The file variant a load needs: ``notop`` when the source has one and the top is cut."""
        return "notop" if not include_top and "notop" in self.files else "top"


@dataclass(frozen=True)
class ModelEntry:
    """One architecture of the zoo and its weight sources."""

    name: str
    spec: str
    input_shape: tuple[int, ...]
    head: str
    default_weights: str | None
    weights: Mapping[str, WeightSource]
    description: str = ""


@dataclass(frozen=True)
class ClassIndexEntry:
    """A list of class names, downloaded like any other file."""

    name: str
    format: str
    file: FileEntry
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    """A validated, merged manifest. ``origins`` lists what it was merged from."""

    models: Mapping[str, ModelEntry]
    classes: Mapping[str, ClassIndexEntry]
    origins: tuple[str, ...] = ()

    def model(self, name: str) -> ModelEntry:
        """The model called ``name``; UnknownNameError with suggestions otherwise."""
        try:
            return self.models[name]
        except KeyError:
            raise UnknownNameError("model", name, list(self.models)) from None

    def source(self, name: str, tag: str) -> WeightSource:
        """The weight source ``tag`` of model ``name``; UnknownNameError otherwise."""
        entry = self.model(name)
        try:
            return entry.weights[tag]
        except KeyError:
            known = list(entry.weights)
            raise UnknownNameError(
                f"weights tag for {name}", tag, known, hint=f"{name} has weights: {known}"
            ) from None

    def class_index(self, name: str) -> ClassIndexEntry:
        """The class list called ``name``; UnknownNameError otherwise."""
        try:
            return self.classes[name]
        except KeyError:
            raise UnknownNameError("class list", name, list(self.classes)) from None

    def pretrained_names(self) -> list[str]:
        """Every ``model.tag`` pair, sorted."""
        return sorted(s.qualified_name for m in self.models.values() for s in m.weights.values())

    def names(self, pattern: str = "*", pretrained: bool = False) -> list[str]:
        """Model names (or ``model.tag`` names) matching fnmatch ``pattern``, sorted.

        With ``pretrained=True`` a ``model.tag`` matches when either it or its model name does,
        so ``"vgg19"`` lists every source of vgg19.
        """
        if not pretrained:
            return sorted(n for n in self.models if fnmatch.fnmatchcase(n, pattern))
        return [
            q
            for q in self.pretrained_names()
            if fnmatch.fnmatchcase(q, pattern) or fnmatch.fnmatchcase(q.split(".")[0], pattern)
        ]


def builtin_manifest_path() -> Path:
    """The manifest that ships inside the package."""
    return Path(__file__).with_name("weights_manifest.json")


def load_manifest(user: ManifestLike | Sequence[ManifestLike] | None = None) -> Manifest:
    """The built-in manifest merged with ``KZOO_MANIFEST`` and then ``user``.

    Args:
        user: A manifest file path, a dict in the manifest schema, an already loaded
            Manifest (returned as is), or a list of those; merged last.

    Returns:
        The validated Manifest.

    Raises:
        ManifestError: A file cannot be read or parsed, or the merged result does not validate;
            the message names the bad key path, like
            ``models.vgg19.weights.imagenet.files.top.size``.
    """
    if isinstance(user, Manifest):
        return user
    data = _read_json(builtin_manifest_path(), resolve_paths=False)
    origins = ["built-in"]
    layers: list[ManifestLike] = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    if isinstance(user, (list, tuple)):
        layers.extend(user)
    elif user is not None:
        layers.append(user)
    for layer in layers:
        if isinstance(layer, Manifest):
            raise ManifestError("a loaded Manifest cannot be merged; pass a path or a dict")
        if isinstance(layer, Mapping):
            overlay, origin = _resolve_urls(copy.deepcopy(dict(layer)), Path.cwd()), "<dict>"
        else:
            path = Path(os.fspath(layer)).expanduser()
            overlay, origin = _read_json(path, resolve_paths=True), str(path)
        data = merge_manifests(data, overlay)
        origins.append(origin)
    return parse_manifest(data, origins=tuple(origins))


def merge_manifests(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` onto ``base``: objects recursively, any other value replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_manifests(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_manifest(data: Any, origins: tuple[str, ...] = ()) -> Manifest:
    """Validate a manifest in its JSON form and turn it into frozen dataclasses.

    Args:
        data: The decoded JSON object.
        origins: Where it came from, for error messages.

    Returns:
        The Manifest.

    Raises:
        ManifestError: naming the first bad key path and what was received.
    """
    # Imported here, not at the top: the schema module builds this module's dataclasses.
    from kzoo._manifest_schema import _parse

    where = f" (merged from {', '.join(origins)})" if origins else ""
    try:
        return _parse(data, origins)
    except ManifestError as error:
        raise ManifestError(f"invalid weights manifest{where}: {error}") from None


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- reading ----------------------------------------------------------------------------


def _read_json(path: Path, resolve_paths: bool) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ManifestError(
            f"manifest file not found: {path} (check {ENV_VAR} or the manifest= argument)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"cannot read manifest {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"manifest {path} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path} must hold a JSON object. Received: {_short(data)}")
    return _resolve_urls(data, path.parent) if resolve_paths else data


def _resolve_urls(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Turn plain paths in every ``urls`` list into absolute ``file://`` URLs."""
    for key, value in data.items():
        if key == "urls" and isinstance(value, list):
            data[key] = [
                (base / os.path.expanduser(u)).resolve().as_uri()
                if isinstance(u, str) and u and not _URL.match(u)
                else u
                for u in value
            ]
        elif isinstance(value, dict):
            _resolve_urls(value, base)
    return data
