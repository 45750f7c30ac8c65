"""One self-contained HTML page about a training run, to keep or to send.

Every picture is an inline PNG (a ``data:`` URI) and there is no script, style sheet, font or
link to anything outside the file, so it opens offline, in a mail attachment, years later.
Sections appear for what is given: the data check, the learning curves (with the boundary
between the frozen and the fine-tuning phase), the learning-rate finder's curve, the
confusion matrix and per-class scores, the top losses with their saliency, calibration before
and after, and the weights' source, hash and licence.

The objects are read through what they offer (``.plot(path)``, ``.to_dict()``,
``plot_confusion_matrix``...), so results of :mod:`kzoo.loop` and a data check fit as they
are.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kzoo.plots import plot_history

__all__ = ["SECTIONS", "write_report"]

# section id -> heading, in the order the page shows them
SECTIONS = {
    "data-check": "Data check",
    "learning-curves": "Learning curves",
    "lr-finder": "Learning-rate finder",
    "confusion": "Confusion matrix",
    "top-losses": "Top losses",
    "calibration": "Calibration",
    "weights": "Weights",
}

_STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
img { max-width: 100%; } .hint { color: #666; font-size: 0.9em; }
"""


def write_report(
    path: str | os.PathLike,
    *,
    title: str = "Training report",
    history: Any = None,
    lr_finder: Any = None,
    interpretation: Any = None,
    calibration: Any = None,
    data_check: Any = None,
    weights_info: Mapping[str, Any] | None = None,
    top_losses: int = 9,
    saliency: bool = True,
) -> Path:
    """Write the run report to ``path`` (one HTML file) and return the path.

    Args:
        path: The ``.html`` file to write (replaced atomically: a failure leaves no half page).
        title: The page's heading.
        history: A Keras ``History``, kzoo's ``TransferHistory`` (its ``phase_boundary`` is
            drawn), or a dict of metric -> values per epoch.
        lr_finder: A :class:`kzoo.loop.LRFinderResult`.
        interpretation: A :class:`kzoo.loop.Interpretation`.
        calibration: A :class:`kzoo.loop.Calibration`, or the model ``kzoo.calibrate``
            returned (its ``.calibration``).
        data_check: Any object with ``.to_dict()`` (the dataset check's result); shown as a
            table of its entries.
        weights_info: The weights' ``source``, ``sha256``, ``licence`` and any other entries.
        top_losses: How many of the worst samples to show.
        saliency: Overlay each top loss with its saliency map.

    Returns:
        The path written.
    """
    calibration = getattr(calibration, "calibration", calibration)
    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch:
        figure = _Figures(Path(scratch))
        sections: dict[str, str] = {}
        if data_check is not None:
            sections["data-check"] = _mapping_table(data_check.to_dict())
        if history is not None:
            sections["learning-curves"] = figure("curves", lambda p: plot_history(history, p))
        if lr_finder is not None:
            sections["lr-finder"] = figure("lr", lr_finder.plot) + _p(
                f"Suggested learning rate: {lr_finder.suggestion:.3g}. This is a hint, read off "
                f"the curve by the rule “{lr_finder.rule}” ({lr_finder.rule_description}); "
                "other rules: "
                + ", ".join(f"{k}: {v:.3g}" for k, v in sorted(lr_finder.suggestions.items())),
                hint=True,
            )
        if interpretation is not None:
            sections["confusion"] = (
                _p(f"Accuracy: {interpretation.accuracy:.4f}")
                + figure("confusion", interpretation.plot_confusion_matrix)
                + _per_class_table(interpretation.per_class())
                + _most_confused(interpretation.most_confused()[:10])
            )
            sections["top-losses"] = figure(
                "top_losses",
                lambda p: interpretation.plot_top_losses(p, k=top_losses, saliency=saliency),
            ) + _top_loss_table(interpretation.top_losses(top_losses))
        if calibration is not None:
            numbers = calibration.to_dict()
            sections["calibration"] = figure("calibration", calibration.plot) + _mapping_table(
                {
                    "temperature": numbers["temperature"],
                    "ECE (15 bins) before → after": (
                        f"{numbers['ece_before']:.4f} → {numbers['ece_after']:.4f}"
                    ),
                    "NLL before → after": (
                        f"{numbers['nll_before']:.4f} → {numbers['nll_after']:.4f}"
                    ),
                }
            )
        if weights_info is not None:
            sections["weights"] = _mapping_table(dict(weights_info))
    body = "".join(
        f'<section id="{key}"><h2>{SECTIONS[key]}</h2>{sections[key]}</section>\n'
        for key in SECTIONS
        if key in sections
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
    return path


class _Figures:
    """Draws a figure into the scratch folder and returns it as an inline ``<img>``."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch

    def __call__(self, name: str, draw: Callable[[Path], Any]) -> str:
        target = self.scratch / f"{name}.png"
        draw(target)
        encoded = base64.b64encode(target.read_bytes()).decode("ascii")
        return f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}"></p>'


def _p(text: str, hint: bool = False) -> str:
    css = ' class="hint"' if hint else ""
    return f"<p{css}>{html.escape(text)}</p>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{html.escape(str(k))}: {_cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        shown = ", ".join(_cell(v) for v in value[:20])
        return shown + (f" … ({len(value)} in all)" if len(value) > 20 else "")
    return html.escape(str(value))


def _mapping_table(mapping: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{_cell(value)}</td></tr>"
        for key, value in mapping.items()
    )
    return f"<table>{rows}</table>"


def _per_class_table(scores: Mapping[str, Mapping[str, float]]) -> str:
    header = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{s['precision']:.3f}</td>"
        f"<td>{s['recall']:.3f}</td><td>{s['f1']:.3f}</td><td>{int(s['support'])}</td></tr>"
        for name, s in scores.items()
    )
    return f"<table>{header}{rows}</table>"


def _most_confused(pairs: list[tuple[str, str, int]]) -> str:
    if not pairs:
        return _p("No confusions.")
    rows = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(p)}</td><td>{n}</td></tr>"
        for a, p, n in pairs
    )
    return f"<table><tr><th>actual</th><th>predicted as</th><th>count</th></tr>{rows}</table>"


def _top_loss_table(losses: list[Any]) -> str:
    rows = "".join(
        f"<tr><td>{t.index}</td><td>{html.escape(Path(t.path).name) if t.path else ''}</td>"
        f"<td>{html.escape(t.label)}</td><td>{html.escape(t.predicted)}</td>"
        f"<td>{t.loss:.3f}</td><td>{t.probability:.3f}</td></tr>"
        for t in losses
    )
    header = (
        "<tr><th>index</th><th>file</th><th>actual</th><th>predicted</th><th>loss</th>"
        "<th>p(predicted)</th></tr>"
    )
    return f"<table>{header}{rows}</table>"
