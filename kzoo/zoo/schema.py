"""Validation of a manifest's JSON form: checks every key and builds the frozen dataclasses.

Each check names the bad key path (``models.vgg19.weights.imagenet.files.top.size``), what it
must be, and what was received, with did-you-mean suggestions for misspelt keys and choices.
Formats come from the converters' one table; a model's ``spec`` must be a named architecture
or an architecture string that parses. :func:`kzoo.zoo.manifest.parse_manifest` is the
public entry point.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from kzoo.converters import FORMATS, FORMER_NAMES, canonical_format
from kzoo.dsl import get_architecture
from kzoo.dsl import parse as parse_spec
from kzoo.errors import ManifestError, SpecError
from kzoo.suggest import closest
from kzoo.zoo.entries import (
    CLASS_FORMATS,
    EMBEDDED_CLASSES,
    PREPROCESSING_MODES,
    SCHEMA_VERSION,
    ClassIndexEntry,
    FileEntry,
    Manifest,
    ModelEntry,
    WeightSource,
)

__all__ = ["parse", "short"]

_FORMATS_WITH_CLASSES = tuple(f.name for f in FORMATS.values() if f.embedded_classes)

# used with fullmatch: "$" alone would also accept a trailing newline ("vgg19\n", a hash + "\n")
_NAME = re.compile(r"[a-z0-9][a-z0-9_\-]*")  # no dots: "vgg19.tv_in1k" splits on the dot
_HEX = {"md5": re.compile(r"[0-9a-f]{32}"), "sha256": re.compile(r"[0-9a-f]{64}")}


def short(value: Any) -> str:
    """``value`` as JSON (strings quoted), cut to 80 characters, for error messages.

    What JSON cannot write (a ``Path`` in a manifest given as a dict) is shown by its repr, so
    the error names the bad value instead of failing on it with a TypeError.
    """
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value)
        except TypeError:
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse(data: Any, origins: tuple[str, ...]) -> Manifest:
    """Validate a manifest's JSON form and build its dataclasses.

    Raises:
        ManifestError: Naming the first bad key path, what it must be and what was received.
    """
    _object(data, "", required=("schema", "models"), optional=("classes",))
    if data["schema"] != SCHEMA_VERSION:
        _fail("schema", f"must be {SCHEMA_VERSION}", data["schema"])
    _object(data["models"], "models")
    classes_raw = data.get("classes")
    if classes_raw is None:
        classes_raw = {}  # absent or null: no class lists ([] or "" are errors, not "none")
    _object(classes_raw, "classes")
    classes = {n: _class_entry(n, v, f"classes.{n}") for n, v in _items(classes_raw, "classes")}
    models = {
        n: _model_entry(n, v, f"models.{n}", classes) for n, v in _items(data["models"], "models")
    }
    return Manifest(MappingProxyType(models), MappingProxyType(classes), origins)


def _model_entry(name: str, raw: Any, path: str, classes: Mapping[str, Any]) -> ModelEntry:
    _object(
        raw,
        path,
        required=("spec", "input_shape", "weights"),
        optional=("head", "default_weights", "description"),
    )
    spec = _spec(raw["spec"], f"{path}.spec")
    shape = raw["input_shape"]
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        _fail(
            f"{path}.input_shape", "must be [height, width, channels] of positive integers", shape
        )
    head = _string(raw.get("head", "flatten"), f"{path}.head")
    _object(raw["weights"], f"{path}.weights")
    weights = {
        tag: _source(name, tag, v, f"{path}.weights.{tag}", classes)
        for tag, v in _items(raw["weights"], f"{path}.weights")
    }
    default = raw.get("default_weights")
    # a list or an object here would be unhashable: check the type before looking it up
    if default is not None and (not isinstance(default, str) or default not in weights):
        _fail(f"{path}.default_weights", f"must be one of {sorted(weights)} or null", default)
    description = _string(raw.get("description", ""), f"{path}.description", empty=True)
    return ModelEntry(
        name, spec, tuple(shape), head, default, MappingProxyType(weights), description
    )


def _source(model: str, tag: str, raw: Any, path: str, classes: Mapping[str, Any]) -> WeightSource:
    _object(
        raw,
        path,
        required=("format", "preprocessing", "files"),
        optional=("classes", "license", "description", "import_only", "spec"),
    )
    fmt = raw["format"]
    fmt = canonical_format(fmt) if isinstance(fmt, str) and fmt in FORMER_NAMES else fmt
    fmt = _choice(fmt, f"{path}.format", tuple(FORMATS))
    spec = _spec(raw["spec"], f"{path}.spec") if "spec" in raw else None
    mode = _choice(raw["preprocessing"], f"{path}.preprocessing", PREPROCESSING_MODES)
    import_only = raw.get("import_only")
    if import_only is not None:
        import_only = _string(import_only, f"{path}.import_only")
    _object(raw["files"], f"{path}.files", required=("top",), optional=("notop",))
    files = {
        variant: _file(v, f"{path}.files.{variant}", need_url=import_only is None)
        for variant, v in raw["files"].items()
        if not variant.startswith("_")
    }
    class_list = raw.get("classes")
    if class_list is not None:
        class_list = _string(class_list, f"{path}.classes")
        if class_list == EMBEDDED_CLASSES and fmt not in _FORMATS_WITH_CLASSES:
            _fail(
                f"{path}.classes",
                f"'embedded' needs a format that carries class names "
                f"({', '.join(_FORMATS_WITH_CLASSES)})",
                class_list,
            )
        if class_list != EMBEDDED_CLASSES and class_list not in classes:
            known = [*classes, EMBEDDED_CLASSES]
            _fail(
                f"{path}.classes",
                f"must name an entry of 'classes' ({sorted(known)})",
                class_list,
                suggest=known,
            )
    return WeightSource(
        model=model,
        tag=tag,
        format=fmt,
        preprocessing=mode,
        files=MappingProxyType(files),
        classes=class_list,
        license=_optional_string(raw.get("license"), f"{path}.license"),
        description=_string(raw.get("description", ""), f"{path}.description", empty=True),
        import_only=import_only,
        spec=spec,
    )


def _spec(value: Any, path: str) -> str:
    spec = _string(value, path)
    if get_architecture(spec) is None:
        try:
            parse_spec(spec)
        except SpecError as error:
            _fail(
                path,
                f"must name an architecture (kzoo.list_architectures()) or be an architecture "
                f"string; {error.reason} at column {error.span[0] + 1}",
                spec,
            )
    return spec


def _class_entry(name: str, raw: Any, path: str) -> ClassIndexEntry:
    _object(
        raw,
        path,
        required=("format", "urls"),
        optional=("size", "md5", "sha256", "description"),
    )
    fmt = _choice(raw["format"], f"{path}.format", CLASS_FORMATS)
    file = _file({k: raw.get(k) for k in ("urls", "size", "md5", "sha256")}, path, need_url=True)
    description = _string(raw.get("description", ""), f"{path}.description", empty=True)
    return ClassIndexEntry(name, fmt, file, description)


def _file(raw: Any, path: str, need_url: bool) -> FileEntry:
    _object(raw, path, required=("urls",), optional=("size", "md5", "sha256"))
    urls = raw["urls"]
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        _fail(f"{path}.urls", "must be a list of URL strings (mirrors, tried in order)", urls)
    if need_url and not urls:
        _fail(f"{path}.urls", "must list at least one URL (or mark the source import_only)", urls)
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        _fail(f"{path}.size", "must be a non-negative integer (bytes) or null", size)
    hashes = {}
    for alg, pattern in _HEX.items():
        value = raw.get(alg)
        if value is not None and (
            not isinstance(value, str) or not pattern.fullmatch(value.lower())
        ):
            _fail(f"{path}.{alg}", f"must be the {alg} hex digest or null", value)
        hashes[alg] = value.lower() if value else None
    return FileEntry(tuple(urls), size, hashes["md5"], hashes["sha256"])


def _items(raw: Mapping[str, Any], path: str):
    for key, value in raw.items():
        if key.startswith("_"):
            continue  # "_comment" keys let users annotate their manifests
        if not _NAME.fullmatch(key):
            _fail(
                f"{path}.{key}", "names use lowercase letters, digits, '_' and '-' (no dots)", key
            )
        yield key, value


def _object(raw: Any, path: str, required: Sequence[str] = (), optional: Sequence[str] = ()):
    label = path or "the manifest"
    if not isinstance(raw, Mapping):
        _fail(path, "must be a JSON object", raw, label=label)
    for key in required:
        if key not in raw:
            _fail(f"{path}.{key}".lstrip("."), "is required", None, received=False)
    if required or optional:
        allowed = (*required, *optional)
        for key in raw:
            if key not in allowed and not key.startswith("_"):
                _fail(
                    f"{path}.{key}".lstrip("."),
                    f"is not a known key (allowed: {', '.join(allowed)})",
                    key,
                    suggest=allowed,
                    received=False,
                )


def _choice(value: Any, path: str, choices: Sequence[str]) -> str:
    if value not in choices:
        _fail(path, f"must be one of {list(choices)}", value, suggest=choices)
    return value


def _string(value: Any, path: str, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        _fail(path, "must be a non-empty string" if not empty else "must be a string", value)
    return value


def _optional_string(value: Any, path: str) -> str | None:
    return None if value is None else _string(value, path)


def _fail(
    path: str,
    what: str,
    value: Any,
    *,
    suggest: Sequence[str] = (),
    received: bool = True,
    label: str | None = None,
) -> None:
    message = f"{label or path} {what}"
    if suggest and isinstance(value, str):
        close = closest(value, suggest)
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    if received:
        message += f". Received: {short(value)}"
    raise ManifestError(message)
