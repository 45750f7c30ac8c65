"""The parsed manifest: frozen dataclasses for models, weight sources, files and class lists.

:mod:`.schema` builds them from the JSON form and :mod:`.manifest` loads and merges the files;
everything else in the zoo reads these. Pure Python.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from kzoo.dsl import get_architecture
from kzoo.errors import Hint, UnknownNameError

__all__ = [
    "CLASS_FORMATS",
    "EMBEDDED_CLASSES",
    "PREPROCESSING_MODES",
    "SCHEMA_VERSION",
    "VARIANTS",
    "ClassIndexEntry",
    "FileEntry",
    "Manifest",
    "ModelEntry",
    "WeightSource",
]

SCHEMA_VERSION = 1
# kzoo.layers.MODES, which imports Keras; a test keeps the two equal
PREPROCESSING_MODES = ("caffe", "none", "tf", "torch")
CLASS_FORMATS = ("keras_class_index",)
VARIANTS = ("top", "notop")
EMBEDDED_CLASSES = "embedded"  # class names read from the weights file itself (Lasagne)


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
    """One set of pretrained weights for a model (a "tag": imagenet, caffe, tv_in1k, ...).

    Attributes:
        spec: The architecture variant these weights need, where it is not the model's own
            (``"resnet50_torch"`` for torchvision's ``resnet50``: stride on the 3x3, no conv
            bias), so one model name per depth serves every source; None for the model's.
    """

    model: str
    tag: str
    format: str
    preprocessing: str
    files: Mapping[str, FileEntry]
    classes: str | None = None
    license: str | None = None
    description: str = ""
    import_only: str | None = None
    spec: str | None = None

    @property
    def qualified_name(self) -> str:
        """The timm-style name, ``"vgg19.imagenet"``."""
        return f"{self.model}.{self.tag}"

    def variant_for(self, include_top: bool) -> str:
        """The file variant a load needs: ``notop`` when the source has one and the top is cut."""
        return "notop" if not include_top and "notop" in self.files else "top"


@dataclass(frozen=True)
class ModelEntry:
    """One architecture of the zoo and its weight sources.

    Attributes:
        spec: A named architecture of :mod:`kzoo.dsl.architectures` (``"vgg19"``) or an
            architecture string.
    """

    name: str
    spec: str
    input_shape: tuple[int, ...]
    head: str
    default_weights: str | None
    weights: Mapping[str, WeightSource]
    description: str = ""

    def spec_for(self, source: WeightSource | None) -> str:
        """The architecture a load with ``source`` builds: the source's own, else the model's."""
        return source.spec if source is not None and source.spec else self.spec


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
            hints = []
            if get_architecture(name) is not None:  # 'lenet': a spec, not a pretrained model
                hints.append(
                    Hint(
                        "build_architecture",
                        f"{name!r} is a named architecture without pretrained weights: build it "
                        f"with kzoo.build({name!r}) (kzoo.list_architectures() lists them all)",
                        {"name": name},
                    )
                )
            raise UnknownNameError("model", name, list(self.models), hints=hints) from None

    def source(self, name: str, tag: str) -> WeightSource:
        """The weight source ``tag`` of model ``name``; UnknownNameError otherwise."""
        entry = self.model(name)
        try:
            return entry.weights[tag]
        except KeyError:
            # the message already lists the tags, or names the close one
            raise UnknownNameError(f"weights tag for {name}", tag, list(entry.weights)) from None

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
