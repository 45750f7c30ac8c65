"""Keeping native libraries' chatter off the terminal.

TensorFlow and the LiteRT interpreter write INFO lines straight to file descriptor 2 from C++,
where no Python log level reaches them (``TF_CPP_MIN_LOG_LEVEL`` covers TensorFlow's own logs,
not its start-up probes or LiteRT's delegate messages). The command line holds that
descriptor while they run and writes back what is worth reading.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator

from kzoo.lazy import on_first_import

__all__ = ["native_noise_dropped", "quiet_tensorflow"]

# A line the LiteRT interpreter prints every time it starts, on success.
_LITERT_NOISE = re.compile(rb"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.\s*")


@contextlib.contextmanager
def _holding_stderr(keep: Callable[[bytes, bool], bool]) -> Iterator[None]:
    """Point file descriptor 2 at a temporary file for the block, then write back its lines.

    Args:
        keep: ``keep(line, failed)`` says whether a held line is written back; ``failed`` is
            whether the block raised.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().splitlines(keepends=True)
            kept = b"".join(line for line in lines if keep(line, failed))
            if kept:
                os.write(2, kept)


def native_noise_dropped() -> contextlib.AbstractContextManager[None]:
    """Around a block: drop the LiteRT interpreter's start-up line from stderr, keep the rest.

    What the block writes to stderr (kzoo's own warnings included) appears when it ends.
    """
    return _holding_stderr(lambda line, failed: not _LITERT_NOISE.fullmatch(line))


@contextlib.contextmanager
def _tensorflow_quietly() -> Iterator[None]:
    """Around TensorFlow's first import: hold back what its native libraries print.

    They write about eight lines to file descriptor 2 (oneDNN, CUDA probing, absl) while they
    load and probe devices, before any log level applies: noise on every command. The lines
    are replayed if the import fails.
    """
    with _holding_stderr(lambda line, failed: failed):
        yield
        sys.modules["tensorflow"].config.list_physical_devices()  # the CUDA probe, now


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up and INFO/WARNING logs off the terminal, unless asked for."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return  # the user chose a log level: show what it lets through
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    on_first_import("tensorflow", _tensorflow_quietly)
