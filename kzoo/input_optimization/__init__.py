"""Images made by gradient descent on the input, not the weights: style transfer, fooling.

* :func:`stylize` / :class:`StyleTransfer` (:mod:`.style_transfer`) - Gatys et al.'s neural
  style transfer on VGG features;
* :func:`fool` (:mod:`.fooling`) - images a classifier is sure about that no person would
  recognise (Nguyen et al.; Simonyan et al.'s class models);
* :mod:`.descent` - the loop they share: a compiled input gradient, Adam on the pixels,
  clipping, progress.
"""

from __future__ import annotations

from kzoo.input_optimization.fooling import FoolingResult, fool
from kzoo.input_optimization.style_transfer import StyleTransfer, stylize

__all__ = ["FoolingResult", "StyleTransfer", "fool", "stylize"]
