"""The errors kzoo raises on purpose about names, strings, files, downloads and models.

All of them derive from :class:`KzooError`, and each also derives from the built-in
exception a caller would naturally catch, so ``except ValueError`` keeps working. A bad
argument value of a single call (a negative count, a choice not in its list, a class index
out of range) is a plain ``ValueError`` naming the argument, as in Keras and NumPy::

    KzooError
    ├── SpecError (ValueError)           a malformed architecture string; .spec, .span
    ├── UnknownNameError (LookupError)   a model, weights tag, layer or token that does not exist
    ├── ManifestError (ValueError)       a manifest that does not validate; names the bad key
    ├── DownloadError (OSError)          a file that could not be fetched
    │   ├── ChecksumError                fetched, but its size or hash is wrong (nothing is kept)
    │   ├── OfflineError                 KZOO_OFFLINE=1 and the file is not cached
    │   └── HubError                     the Hugging Face Hub refused a file; .code, .repo
    │       ├── RepoNotFoundError        no such repo (or a private one without a token)
    │       ├── RevisionNotFoundError    no such branch, tag or commit in the repo
    │       ├── EntryNotFoundError       no such file at that revision
    │       └── GatedRepoError           the repo's conditions are not accepted for the token
    ├── ConversionError (ValueError)     a weights file unreadable or unfit for the model
    │   └── UnsafePickleError            a pickle that asks for anything but numpy arrays
    ├── TransferError (ValueError)       a transfer-learning request that cannot work
    ├── TrainingError (RuntimeError)     training went wrong (NaN loss, ...); raised by diagnostics
    ├── BackendError (ImportError)       Keras has no backend installed; names the extra to install
    ├── ImageError (ValueError)          a file that is not an image Pillow can read
    └── ExportError (RuntimeError)       an exported model cannot be written or computes otherwise

An error may carry :class:`Hint` objects: a fix as data (``action`` and its ``params``), which
the command line writes as a command and a Python caller reads as ``hint.text``. The library
itself never spells out a command line.

Imports nothing of kzoo but :mod:`kzoo.suggest`, the did-you-mean it shares with the notation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from kzoo.suggest import closest

__all__ = [
    "BackendError",
    "ChecksumError",
    "ConversionError",
    "DownloadError",
    "EntryNotFoundError",
    "ExportError",
    "GatedRepoError",
    "Hint",
    "HubError",
    "ImageError",
    "KzooError",
    "ManifestError",
    "OfflineError",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "SpecError",
    "TrainingError",
    "TransferError",
    "UnknownNameError",
    "UnsafePickleError",
]


class Hint(NamedTuple):
    """A fix an error suggests, as data.

    A named tuple rather than a dataclass: ``import kzoo`` imports this module, and the
    dataclasses module alone would triple its cost.

    Attributes:
        action: What to do, e.g. ``"import_weights"`` or ``"give_input_shape"``; the command
            line turns each action it knows into a command.
        text: How the library words the fix for a Python caller.
        params: The values the fix needs, e.g. ``{"model": "vgg19", "tag": "lasagne"}``.
    """

    action: str
    text: str
    params: Mapping[str, str] = {}


class KzooError(Exception):
    """Base class of every error kzoo raises on purpose.

    Args:
        *args: The message, as for any exception.
        hints: Fixes to suggest; each is shown on a line of its own after the message.

    Attributes:
        hints: The :class:`Hint` objects, possibly empty.
    """

    _hint_prefix = "fix: "

    def __init__(self, *args: object, hints: Sequence[Hint] = ()) -> None:
        super().__init__(*args)
        self.hints = tuple(hints)

    @property
    def message(self) -> str:
        """The message without the hint lines."""
        return Exception.__str__(self)

    def __str__(self) -> str:
        return self.message + "".join(f"\n  {self._hint_prefix}{h.text}" for h in self.hints)

    def __reduce__(self):  # picklable across processes whatever the subclass's __init__ takes
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(cls: type, args: tuple, state: dict) -> KzooError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class SpecError(KzooError, ValueError):
    """A malformed architecture string.

    The message shows the spec with a caret line under the offending text and, when kzoo
    has one, a ``help:`` suggestion::

        unknown layer token 'PM2'
          | 64C3-PM2-FC10
          |      ^^^
          = help: did you mean 'MP2'?

    Attributes:
        spec: The full architecture string.
        span: ``(start, end)`` columns of the offending text, ``0 <= start <= end <= len(spec)``.
        reason: The one-line description, without the caret drawing.
        help: The suggestion, or None.
    """

    _hint_prefix = "= help: "

    def __init__(
        self,
        reason: str,
        spec: str,
        span: tuple[int, int],
        help: str | None = None,
        hints: Sequence[Hint] = (),
    ) -> None:
        start, end = span
        start = max(0, min(start, len(spec)))
        end = max(start, min(end, len(spec)))
        self.reason = reason
        self.spec = spec
        self.span = (start, end)
        self.help = help
        super().__init__(self._render(), hints=hints)

    def _render(self) -> str:
        start, end = self.span
        carets = "^" * max(1, end - start)
        lines = [self.reason, f"  | {self.spec}", f"  | {' ' * start}{carets}"]
        if self.help:
            lines.append(f"  = help: {self.help}")
        return "\n".join(lines)


class UnknownNameError(KzooError, LookupError):
    """A name that does not exist, with the closest known names as suggestions.

    Attributes:
        name: The name that was asked for.
        known: The names that do exist.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        known: Sequence[str],
        hint: str | None = None,
        hints: Sequence[Hint] = (),
    ) -> None:
        self.name = name
        self.known = sorted(known)
        message = f"unknown {kind} {name!r}"
        suggestions = closest(name, self.known)
        if suggestions:
            message += f"; did you mean {' or '.join(repr(s) for s in suggestions)}?"
        elif self.known:
            shown = ", ".join(self.known[:20]) + (", ..." if len(self.known) > 20 else "")
            message += f"; known: {shown}"
        if hint:
            message += f"\n{hint}"
        super().__init__(message, hints=hints)

    @property
    def message(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class ManifestError(KzooError, ValueError):
    """A weights manifest that does not validate."""


class DownloadError(KzooError, OSError):
    """A file that could not be fetched from any of its URLs."""


class ChecksumError(DownloadError):
    """A fetched file whose size or hash differs from the pinned one."""


class OfflineError(DownloadError):
    """``KZOO_OFFLINE=1`` is set and the file is not in the cache."""


class HubError(DownloadError):
    """The Hugging Face Hub (or a mirror at ``HF_ENDPOINT``) refused a file.

    Attributes:
        code: The Hub's ``X-Error-Code`` (``"GatedRepo"``, ...), or None when it sent none.
        repo: The repo, ``"org/name"``.
    """

    def __init__(
        self, *args: object, code: str | None = None, repo: str = "", hints: Sequence[Hint] = ()
    ) -> None:
        super().__init__(*args, hints=hints)
        self.code = code
        self.repo = repo


class RepoNotFoundError(HubError):
    """No such repo on the Hub, or a private one the token (if any) cannot see."""


class RevisionNotFoundError(HubError):
    """No such branch, tag or commit in the repo."""


class EntryNotFoundError(HubError):
    """No such file in the repo at that revision."""


class GatedRepoError(HubError):
    """A gated repo whose conditions the token's account has not accepted (or no token)."""


class ConversionError(KzooError, ValueError):
    """A weights file that cannot be read, or arrays that do not fit the model.

    Attributes:
        file_is_bad: True when the file itself is at fault (unreadable, damaged, NaN or integer
            values, hostile), False when it is sound but does not fit the model, None when
            not yet known. The zoo deletes a cached download that is bad.
    """

    file_is_bad: bool | None = None


class UnsafePickleError(ConversionError):
    """A pickle that asks to load something other than plain numpy arrays."""

    file_is_bad = True


class TransferError(KzooError, ValueError):
    """A transfer-learning request that cannot work (bad cut point, bad head, ...)."""


class TrainingError(KzooError, RuntimeError):
    """Training went wrong in a way kzoo detected (NaN loss, collapsed predictions, ...)."""


class BackendError(KzooError, ImportError):
    """Keras cannot start because no backend (TensorFlow, JAX or PyTorch) is installed."""


class ImageError(KzooError, ValueError):
    """An image file that cannot be read (missing, damaged, or not an image)."""


class ExportError(KzooError, RuntimeError):
    """An export that cannot be written, or whose artifact does not compute what Keras does."""
