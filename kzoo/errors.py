"""Every error kzoo raises on purpose.

All of them derive from :class:`KzooError`, and each also derives from the built-in
exception a caller would naturally catch, so ``except ValueError`` keeps working::

    KzooError
    ├── SpecError (ValueError)           a malformed architecture string; .spec, .span
    ├── UnknownNameError (LookupError)   a model, weights tag, layer or token that does not exist
    ├── ManifestError (ValueError)       a manifest that does not validate; names the bad key
    ├── DownloadError (OSError)          a file that could not be fetched
    │   ├── ChecksumError                fetched, but its size or hash is wrong (nothing is kept)
    │   └── OfflineError                 KZOO_OFFLINE=1 and the file is not cached
    ├── ConversionError (ValueError)     a weights file unreadable or unfit for the model
    │   └── UnsafePickleError            a pickle that asks for anything but numpy arrays
    ├── TransferError (ValueError)       a transfer-learning request that cannot work
    └── TrainingError (RuntimeError)     training went wrong (NaN loss, ...); raised by diagnostics
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ChecksumError",
    "ConversionError",
    "DownloadError",
    "KzooError",
    "ManifestError",
    "OfflineError",
    "SpecError",
    "TrainingError",
    "TransferError",
    "UnknownNameError",
    "UnsafePickleError",
]


class KzooError(Exception):
    """Base class of every error kzoo raises on purpose."""


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

    def __init__(
        self, reason: str, spec: str, span: tuple[int, int], help: str | None = None
    ) -> None:
        start, end = span
        start = max(0, min(start, len(spec)))
        end = max(start, min(end, len(spec)))
        self.reason = reason
        self.spec = spec
        self.span = (start, end)
        self.help = help
        super().__init__(self._render())

    def _render(self) -> str:
        start, end = self.span
        carets = "^" * max(1, end - start)
        lines = [self.reason, f"  | {self.spec}", f"  | {' ' * start}{carets}"]
        if self.help:
            lines.append(f"  = help: {self.help}")
        return "\n".join(lines)

    def __reduce__(self):  # keep the error picklable across processes
        return (type(self), (self.reason, self.spec, self.span, self.help))


class UnknownNameError(KzooError, LookupError):
    """A name that does not exist, with the closest known names as suggestions.

    Attributes:
        name: The name that was asked for.
        known: The names that do exist.
    """

    def __init__(self, kind: str, name: str, known: Sequence[str], hint: str | None = None):
        from kzoo._suggest import closest

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
        super().__init__(message)

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class ManifestError(KzooError, ValueError):
    """A weights manifest that does not validate."""


class DownloadError(KzooError, OSError):
    """A file that could not be fetched from any of its URLs."""


class ChecksumError(DownloadError):
    """A fetched file whose size or hash differs from the pinned one."""


class OfflineError(DownloadError):
    """``KZOO_OFFLINE=1`` is set and the file is not in the cache."""


class ConversionError(KzooError, ValueError):
    """A weights file that cannot be read, or arrays that do not fit the model."""


class UnsafePickleError(ConversionError):
    """A pickle that asks to load something other than plain numpy arrays."""


class TransferError(KzooError, ValueError):
    """A transfer-learning request that cannot work (bad cut point, bad head, ...)."""


class TrainingError(KzooError, RuntimeError):
    """Training went wrong in a way kzoo detected (NaN loss, collapsed predictions, ...)."""
