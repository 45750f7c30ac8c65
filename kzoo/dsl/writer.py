"""Keras models -> canonical architecture strings: the way back from :func:`kzoo.build`.

:func:`to_string` reads a chain of layers and writes one DSL item per kzoo token, then
:func:`reroll` folds repeats into ``xN`` and ``[..]xN``, so ``kzoo.build(to_string(model))``
rebuilds the same layers, names and shapes. It reads layers through their ``get_config()``, so
this module never imports Keras.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kzoo.dsl.ast import Layer, format_number, unparse_item, unparse_layer
from kzoo.dsl.builtin_tokens import activation_name, int_pair, pair_text
from kzoo.dsl.parser import parse
from kzoo.dsl.planner import unstrided
from kzoo.dsl.tokens import ACTIVATIONS, TokenProblem, get_token, keywords
from kzoo.errors import SpecError

if TYPE_CHECKING:
    import keras

__all__ = ["reroll", "to_string"]


class _Writer:
    """Reads a chain of layers and writes one item string per kzoo token."""

    def __init__(self, layers: Sequence[Any], head: str | None, bias: bool = False) -> None:
        self.layers = list(layers)
        self.head = head  # the name of the model's last Dense: softmax by default
        self.bias = bias  # the spec-wide default bias of layers followed by BN
        self.i = 0

    def unrepresentable(self, layer: Any, why: str) -> ValueError:
        return ValueError(
            f"Cannot write layer {layer.name!r} ({type(layer).__name__}) as an architecture "
            f"string: {why}. Pass ignore=[{layer.name!r}] to leave it out."
        )

    def peek(self, kind: str) -> Any:
        if self.i < len(self.layers) and type(self.layers[self.i]).__name__ == kind:
            self.i += 1
            return self.layers[self.i - 1]
        return None

    def attached(self, default_act: str, bias: bool, act: str) -> str:
        """The ``+BN+act+D`` suffix for the layers that follow a conv/dense."""
        text = ""
        self.with_bn = False
        if act == "linear" and self.peek("BatchNormalization") is not None:
            text += "+BN"
            self.with_bn = True
            follow = self.peek("Activation")
            act = activation_name(follow.get_config()["activation"]) if follow else "linear"
        if act != default_act:
            if act not in ACTIVATIONS:
                raise self.unrepresentable(self.layers[self.i - 1], f"activation {act!r}")
            text += f"+{act}"
        drop = self.peek("Dropout")
        if drop is not None:
            text += f"+D{format_number(float(drop.rate))}"
        return text

    def items(self) -> list[str]:
        out: list[str] = []
        while self.i < len(self.layers):
            layer = self.layers[self.i]
            self.i += 1
            kind = type(layer).__name__
            if kind == "InputLayer":
                continue
            if kind == "Conv2D":
                out.append(self.conv(layer, layer.get_config()))
            elif kind == "Dense":
                cfg = layer.get_config()
                act = activation_name(cfg["activation"])
                default = "softmax" if layer.name == self.head else "relu"
                text = f"FC{cfg['units']}" + self.attached(default, cfg["use_bias"], act)
                out.append(text + self.options(cfg))
            elif kind == "Flatten":
                if self.i >= len(self.layers) or type(self.layers[self.i]).__name__ != "Dense":
                    out.append("F")  # before a Dense, kzoo inserts the flatten itself
            else:
                out.append(self.token_text(layer))
        return out

    def token_text(self, layer: Any) -> str:
        """The text of the first registered token (built-in, then user) that writes ``layer``."""
        for keyword in keywords():
            token = get_token(keyword)
            try:
                text = token.write(layer) if token is not None and token.write else None
            except TokenProblem as problem:
                raise self.unrepresentable(layer, problem.reason) from None
            if text:
                return text
        raise self.unrepresentable(layer, "no kzoo token builds this kind of layer")

    def options(self, cfg: Mapping[str, Any]) -> str:
        """``{bias=...,init=gabor}`` where a conv/dense differs from the defaults."""
        found = []
        default_bias = self.bias if self.with_bn else True
        if bool(cfg["use_bias"]) != default_bias:
            found.append(f"bias={str(bool(cfg['use_bias'])).lower()}")
        init = cfg.get("kernel_initializer")
        name = init.get("class_name") if isinstance(init, dict) else type(init).__name__
        if name == "GaborInitializer":
            found.append("init=gabor")
        return "{" + ",".join(found) + "}" if found else ""

    def conv(self, layer: Any, cfg: Mapping[str, Any]) -> str:
        strides, dilation = int_pair(cfg["strides"]), int_pair(cfg["dilation_rate"])
        if strides[0] != strides[1] or dilation[0] != dilation[1]:
            raise self.unrepresentable(layer, "unequal strides or dilation")
        if cfg.get("groups", 1) != 1 or cfg.get("data_format") == "channels_first":
            raise self.unrepresentable(layer, "grouped or channels-first convolution")
        text = f"{cfg['filters']}C" + pair_text(int_pair(cfg["kernel_size"]))
        text += f"s{strides[0]}" if strides[0] != 1 else ""
        text += f"d{dilation[0]}" if dilation[0] != 1 else ""
        # a 1x1 kernel pads by nothing either way: only larger kernels say 'v'
        one = int_pair(cfg["kernel_size"]) == (1, 1)
        text += "v" if cfg["padding"] == "valid" and not one else ""
        act = activation_name(cfg["activation"])
        return text + self.attached("relu", cfg["use_bias"], act) + self.options(cfg)


_REPEATED = re.compile(r"x\d+$")
_POOLS = ("MP", "AP")


def _times(text: str, n: int) -> str:
    bare = f"{text}x{n}"
    if not _REPEATED.search(text):
        try:  # 'relux2' reads as one word and '64C3x2x2' not at all: those need brackets
            if len(parse(bare).layers()) == n * len(parse(text).layers()):
                return bare
        except SpecError:
            pass
    return f"[{text}]x{n}"


def reroll(items: Sequence[str]) -> list[str]:
    """Collapse repeats: ``A-A-A`` -> ``Ax3``, ``A-B-A-B`` -> ``[A-B]x2``.

    Greedy from the left, taking the repeat that covers the most layers; a group never starts
    with a pooling layer, so VGG's blocks read ``[512C3x4-MP2]x2``.

    Args:
        items: One string per layer token.

    Returns:
        The items with repetition written as ``xN``.
    """
    out: list[str] = []
    i = 0
    while i < len(items):
        best_len, best_n = 1, 1
        for size in range(1, (len(items) - i) // 2 + 1):
            if size > 1 and items[i].startswith(_POOLS):
                break  # a pool closes a block: '[512C3x4-MP2]x2', not '[MP2-512C3x4]x2'
            n = 1
            while items[i + n * size : i + (n + 1) * size] == items[i : i + size]:
                n += 1
            if n > 1 and size * n > best_len * best_n:
                best_len, best_n = size, n
        if best_n == 1:
            out.append(items[i])
        else:
            unit = reroll(items[i : i + best_len])
            text = unit[0] if len(unit) == 1 else "[" + "-".join(unit) + "]"
            out.append(_times(text, best_n))
        i += best_len * best_n
    return out


def to_string(model: keras.Model, *, ignore: Sequence[str] = ()) -> str:
    """The canonical architecture string of a model built from supported layers.

    ``kzoo.build(to_string(model))`` rebuilds the same layers, names and shapes for models that
    kzoo built, residual and branching ones included (``R[...]``, ``cat[...]``, ``add[...]``).
    The canonical form has spec-wide options first (``{eps=1e-05}`` when every BN shares an
    epsilon other than Keras's default), an ``HxWxC:`` header, ``FC`` (never ``N``), repeats
    re-rolled into ``xN`` and ``[..]xN`` (a residual stage as ``R[first block]xN``), and only
    non-default padding (``v``) spelled out. Pre-activation blocks come back as equivalent
    ``R[BN-relu-...]`` groups, with other names than ``PR[...]`` gives.

    Args:
        model: A Keras model.
        ignore: Names of layers to leave out (e.g. a preprocessing layer).

    Returns:
        The architecture string.

    Raises:
        ValueError: Naming the first layer that no token can write.
    """
    graph = _Graph(model, ignore)
    body = "-".join(graph.top())
    shape = tuple(model.inputs[0].shape[1:])
    header = "x".join(str(d) for d in shape) + ":" if None not in shape else ""
    return graph.spec_options() + header + body


def _history_names(value: Any) -> list[str]:
    """The layer names of the Keras tensors in a serialized call's arguments, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [n for v in value.values() for n in _history_names(v)]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _history_names(v)]
    return []


_MERGES = ("Add", "Concatenate")
_STAGE = re.compile(r"^(conv\d+)_block\d+_(add|out)$")


class _Graph:
    """A functional model as layers, their inputs and their consumers, written as items."""

    def __init__(self, model: keras.Model, ignore: Sequence[str]) -> None:
        skip = set(ignore)
        self.layers = {layer.name: layer for layer in model.layers}
        self.order = {name: i for i, name in enumerate(self.layers)}
        self.inputs: dict[str, list[str]] = {}
        config = model.get_config()
        for entry in config.get("layers", []):
            nodes = entry.get("inbound_nodes") or []
            self.inputs[entry["name"]] = _history_names(nodes[0]["args"]) if nodes else []
        for name in skip:  # an ignored layer is bridged: its consumers read its input
            for other, sources in self.inputs.items():
                self.inputs[other] = [
                    n for s in sources for n in (self.inputs.get(s, []) if s == name else [s])
                ]
        self.consumers: dict[str, list[str]] = {name: [] for name in self.layers}
        for name, sources in self.inputs.items():
            if name in skip:
                continue
            for source in sources:
                self.consumers.setdefault(source, []).append(name)
        self.skip = skip
        dense = [n for n, layer in self.layers.items() if type(layer).__name__ == "Dense"]
        self.head = dense[-1] if dense else None
        self.bias = self.biased_before_bn()
        starts = [n for n, layer in self.layers.items() if type(layer).__name__ == "InputLayer"]
        if len(starts) != 1 or len(model.outputs) != 1:
            raise ValueError(
                "Cannot write a model with several inputs or outputs as an architecture "
                f"string. Received: {len(starts)} inputs, {len(model.outputs)} outputs"
            )
        self.start = starts[0]

    def kind(self, name: str) -> str:
        return type(self.layers[name]).__name__

    def biased_before_bn(self) -> bool:
        """Whether most convs and dense layers followed by BN keep a bias (``{bias=true}``)."""
        votes = []
        for name, layer in self.layers.items():
            follow = self.consumers.get(name, [])
            if (
                self.kind(name) in ("Conv2D", "Dense")
                and len(follow) == 1
                and self.kind(follow[0]) == "BatchNormalization"
            ):
                votes.append(bool(layer.get_config()["use_bias"]))
        return bool(votes) and sum(votes) * 2 > len(votes)

    def spec_options(self) -> str:
        options = []
        bns = [
            layer.get_config()
            for layer in self.layers.values()
            if type(layer).__name__ == "BatchNormalization"
        ]
        if self.bias:
            options.append("bias=true")
        eps = {float(cfg["epsilon"]) for cfg in bns}
        if len(eps) == 1 and eps != {1e-3}:
            options.append(f"eps={format_number(eps.pop())}")
        elif len(eps) > 1:
            raise ValueError(
                "Cannot write BatchNormalization layers with different epsilons "
                f"({sorted(eps)}) as an architecture string."
            )
        scales = {bool(cfg["scale"]) for cfg in bns}
        if scales == {False}:
            options.append("scale=false")
        elif len(scales) > 1:
            raise ValueError("Cannot write BatchNormalization layers with and without scale.")
        return "{" + ",".join(options) + "}" if options else ""

    def write(self, layers: list[str]) -> list[str]:
        return _Writer([self.layers[n] for n in layers], self.head, self.bias).items()

    def walk(self, first: str | None, current: str, stop: str | None) -> tuple[list[Any], str]:
        """Items from ``first`` (or the consumers of ``current``) until ``stop``.

        Returns the items (strings, and ``(stage, text)`` pairs for residual blocks) and the
        name of the last layer written.
        """
        items: list[Any] = []
        run: list[str] = []
        if first is not None:
            run.append(first)
            current = first
        while True:
            follow = self.consumers.get(current, [])
            if not follow or (len(follow) == 1 and follow[0] == stop):
                break
            if len(follow) == 1 and self.kind(follow[0]) not in _MERGES:
                run.append(follow[0])
                current = follow[0]
                continue
            items += self.write(run)
            run = []
            self.drop_preact = False
            block, current = self.block(current)
            if self.drop_preact:  # PR[...] makes its own BN-relu
                if items[-2:] != ["BN", "relu"]:
                    raise ValueError(f"Cannot write the pre-activation before {current!r}.")
                del items[-2:]
            items.append(block)
        items += self.write(run)
        return items, current

    def join(self, current: str) -> str:
        """The first layer that every path leaving ``current`` reaches (where they merge)."""
        reach: list[set[str]] = []
        for start in self.consumers[current]:
            seen, todo = {start}, [start]
            while todo:
                for nxt in self.consumers.get(todo.pop(), []):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            reach.append(seen)
        common = set.intersection(*reach)
        if not common:
            raise ValueError(f"Cannot write the branches after {current!r}: they never merge.")
        return min(common, key=self.order.__getitem__)

    def block(self, current: str) -> tuple[Any, str]:
        merge = self.join(current)
        if self.kind(merge) not in _MERGES:
            raise ValueError(
                f"Cannot write the branches after {current!r}: they meet at {merge!r} "
                f"({self.kind(merge)}), not at an Add or a Concatenate."
            )
        ends: dict[str, list[Any]] = {}
        for start in self.consumers[current]:
            if start == merge:
                continue
            branch, end = self.walk(start, start, merge)
            ends[end] = branch
        sources = self.inputs[merge]
        stage = _STAGE.match(merge)
        after = self.consumers.get(merge, [])
        if self.kind(merge) == "Add" and len(sources) == 2 and stage:
            moved = None
            if len(after) == 1 and self.kind(after[0]) == "Activation":
                moved = after[0]
            shortcut_src, body_src = sources
            body = self.branch_text(ends, body_src, current, moved)
            shortcut = [] if shortcut_src == current else [_text(i) for i in ends[shortcut_src]]
            if shortcut and shortcut[-1].endswith("+linear"):  # a shortcut ends linear anyway
                shortcut[-1] = shortcut[-1][: -len("+linear")]
            pre_activation = self.pre_activation(merge, current, body, shortcut, moved)
            if pre_activation is not None:
                return (stage.group(1), pre_activation), merge
            text = "R[" + body
            if shortcut and not _implicit(body, "-".join(shortcut)):
                text += "|" + "-".join(shortcut)
            text += "]"
            return (stage.group(1), text), moved or merge
        kind = "cat" if self.kind(merge) == "Concatenate" else "add"
        parts = [self.branch_text(ends, src, current, None) for src in sources]
        return f"{kind}[" + "|".join(parts) + "]", merge

    def pre_activation(
        self, merge: str, current: str, body: str, shortcut: list[str], moved: str | None
    ) -> str | None:
        """``PR[...]`` when the block is keras.applications' v2 block, else None.

        Its BN-relu reads the block input: inside the body when the shortcut is the input (or
        its 1x1 max pool), before the fan-out when a projection reads the pre-activated input
        (then :meth:`walk` drops the ``BN-relu`` it wrote before the block).
        """
        if moved is not None or not merge.endswith("_out"):
            return None
        inside = body.startswith("BN-relu-")
        before = current.endswith("_preact_relu") and self.kind(current) == "Activation"
        if not (inside or before):
            return None
        items = parse(body[len("BN-relu-") :] if inside else body).items
        if not items or not all(isinstance(i, Layer) for i in items):
            return None
        convs = [i for i, layer in enumerate(items) if layer.keyword == "C"]
        if not convs or convs[-1] != len(items) - 1:
            return None
        plain = []
        for i, layer in enumerate(items):
            mods = layer.modifiers
            if i in convs[:-1]:
                if [m.keyword for m in mods] != ["BN"]:
                    return None
                mods = ()
            elif i == convs[-1]:
                if [m.keyword for m in mods] != ["linear"]:
                    return None
                mods = ()
            plain.append(unparse_layer(replace(layer, modifiers=mods)))
        text = "-".join(plain)
        if inside and shortcut and not (len(shortcut) == 1 and shortcut[0].startswith("MP1s")):
            return None  # a shortcut of the raw input other than Keras's max pool
        if before and not shortcut:
            return None
        tail = ""
        if before and not _implicit(body, shortcut[0] if len(shortcut) == 1 else "-"):
            tail = "|" + "-".join(shortcut)
        self.drop_preact = before
        return f"PR[{text}{tail}]"

    def branch_text(self, ends: dict, source: str, current: str, moved: str | None) -> str:
        if source == current:
            raise ValueError(
                f"Cannot write an identity branch of {current!r} outside a residual block."
            )
        items = ends[source]
        if moved is not None:  # the activation after the add is the body's last layer's
            last_run = self.tail_run(source)
            written = len(self.write(last_run))
            items = items[: len(items) - written] + self.write([*last_run, moved])
        return "-".join(_text(i) for i in items)

    def tail_run(self, end: str) -> list[str]:
        """The chain of single-input layers that ends at ``end`` (back to a merge or fan-out)."""
        run = [end]
        while True:
            sources = self.inputs.get(run[0], [])
            if (
                len(sources) != 1
                or self.kind(run[0]) in _MERGES
                or len(self.consumers.get(sources[0], [])) != 1
                or self.kind(sources[0]) in (*_MERGES, "InputLayer")
            ):
                return run
            run.insert(0, sources[0])

    def top(self) -> list[str]:
        items, _ = self.walk(None, self.start, None)
        out: list[str] = []
        i = 0
        while i < len(items):
            item = items[i]
            if not isinstance(item, tuple):
                j = i
                while j < len(items) and not isinstance(items[j], tuple):
                    j += 1
                out += reroll([str(x) for x in items[i:j]])
                i = j
                continue
            stage = item[0]
            blocks = []
            while i < len(items) and isinstance(items[i], tuple) and items[i][0] == stage:
                blocks.append(items[i][1])
                i += 1
            out.append(_stage(blocks))
        return out


def _implicit(body_text: str, shortcut_text: str) -> bool:
    """Whether a shortcut is the 1x1 projection ``R[body]`` makes by itself."""
    (short,) = parse(shortcut_text).items or (None,)
    body = parse(body_text).layers()
    if not (isinstance(short, Layer) and short.keyword == "C" and body and body[-1].keyword == "C"):
        return False
    stride = 1
    for layer in body:
        flags = dict(layer.flags)
        if layer.keyword == "C":
            stride *= flags.get("s", 1)
        elif layer.keyword in ("MP", "AP"):
            stride *= flags.get("s", layer.args[0])
    last = body[-1]
    flags = dict(short.flags)

    def has_bn(layer: Layer) -> bool:
        return any(m.keyword == "BN" for m in layer.modifiers)

    return (
        short.count == last.count
        and short.args in ((1,), (1, 1))
        and flags.get("s", 1) == stride
        and flags.get("d", 1) == 1
        and has_bn(short) == has_bn(last)
        and dict(short.kwargs).get("bias") == dict(last.kwargs).get("bias")
        and not [m for m in short.modifiers if m.keyword != "BN"]
    )


def _text(item: Any) -> str:
    return item[1] if isinstance(item, tuple) else item


def _stage(blocks: list[str]) -> str:
    """One residual stage: ``R[first]xN`` when the later blocks are the first unstrided."""
    first = parse(blocks[0]).items[0]
    later = replace(first, branches=tuple(unstrided(b) for b in first.branches))
    rest = blocks[1:]
    if all(b == unparse_item(later) for b in rest):
        return unparse_item(replace(first, times=len(blocks)))
    rolled = reroll(blocks)
    return rolled[0] if len(rolled) == 1 else "[" + "-".join(rolled) + "]"
