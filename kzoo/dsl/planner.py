"""From a parsed spec to a :class:`Plan`: named layers with shapes and parameter counts.

The planner decides everything about a built model except creating Keras objects: layer
names (the keras.applications scheme), the implicit Flatten, the head and its activation, where
BatchNormalization, activations and dropout go, the padding. :mod:`kzoo.builder` turns the
plan into Keras layers one to one, and :func:`kzoo.explain` prints it, so the two cannot
disagree. Each token's shape rule gives the shapes; a failure becomes a
:class:`kzoo.errors.SpecError` that points at the layer's columns. Pure Python: no Keras.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from kzoo.dsl.architectures import get_architecture
from kzoo.dsl.ast import Block, Group, Item, Layer, Modifier, Spec, unparse_layer
from kzoo.dsl.builtin_tokens import MERGE_TOKENS, Shape, format_shape
from kzoo.dsl.parser import parse
from kzoo.dsl.tokens import ACTIVATIONS, Token, TokenProblem, get_token
from kzoo.errors import Hint, SpecError

__all__ = ["Plan", "Step", "plan", "resolve", "unstrided"]


@dataclass
class Step:
    """One Keras layer to create.

    Attributes:
        name: The layer name (prefix included).
        token: The registered token that builds it.
        params: Its arguments (the Keras constructor's for built-ins; the declared names for
            user tokens), ``name`` included.
        label: What explain shows in its token column.
        span: Columns of the spec text this layer comes from, or None.
        output_shape: Output shape without the batch axis.
        n_params: Number of parameters (trainable and not), like Keras ``count_params()``.
        inputs: Names of the steps (or the input layer) it reads, in call order: one for a
            layer of a chain, several for the ``Add`` and ``Concatenate`` that join branches.
    """

    name: str
    token: Token
    params: dict[str, Any]
    label: str
    span: tuple[int, int] | None = None
    output_shape: Shape = ()
    n_params: int = 0
    inputs: tuple[str, ...] = ()


@dataclass
class Plan:
    """Everything :func:`kzoo.build` needs: input shape, input name, layers in order.

    The steps form a DAG in an order where every step comes after its inputs; the last step is
    the output.
    """

    text: str
    input_shape: Shape
    input_name: str
    steps: list[Step] = field(default_factory=list)
    name: str | None = None


def _check_options(opts: dict[str, Any]) -> None:
    def bad(name: str, expected: str) -> ValueError:
        return ValueError(f"{name} must be {expected}. Received: {name}={opts[name]!r}")

    if opts["padding"] not in ("same", "valid"):
        raise bad("padding", "'same' or 'valid'")
    if opts["dialect"] not in (None, "ciresan", "keras"):
        raise bad("dialect", "None, 'keras' or 'ciresan'")
    if opts["pooling"] not in (None, "avg", "max"):
        raise bad("pooling", "None, 'avg' or 'max'")
    if opts["activation"] not in ACTIVATIONS:
        raise bad("activation", f"one of {', '.join(ACTIVATIONS)}")
    if opts["head"] is not None and opts["head"] not in ACTIVATIONS:
        raise bad("head", f"None or one of {', '.join(ACTIVATIONS)}")
    rate = opts["dropout"]
    if rate is not None and (isinstance(rate, bool) or not 0 <= rate < 1):
        raise bad("dropout", "None or a rate in [0, 1)")


def _input_shape_arg(input_shape: Any) -> Shape:
    try:
        shape = tuple(input_shape)
        ok = 1 <= len(shape) <= 3 and all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape
        )
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            "input_shape must be a tuple of 1 to 3 positive ints (or None), in Keras order "
            f"(height, width, channels). Received: input_shape={input_shape!r}"
        )
    return shape


def resolve(spec: str | Spec, input_shape: Any = None) -> tuple[Spec, Shape, str | None]:
    """Parse a spec or named architecture and settle its input shape.

    Returns:
        ``(parsed spec, input shape, architecture name or None)``.

    Raises:
        SpecError: For a bad spec, a header that contradicts ``input_shape``, or no shape at all.
    """
    name = None
    default: Shape | None = None
    if isinstance(spec, str):
        found = get_architecture(spec)
        if found is not None:
            name, text, default = spec.strip().lower(), found[0], found[1]
            spec = text
        spec = parse(spec)
    given = None if input_shape is None else _input_shape_arg(input_shape)
    if given is not None and spec.input_shape is not None and given != spec.input_shape:
        raise SpecError(
            f"the spec's header says the input is {format_shape(spec.input_shape)}, "
            f"but input_shape={given}",
            spec.text,
            spec.header_span or (0, 0),
            help="give the input shape once: drop the header or the input_shape argument",
        )
    shape = given or spec.input_shape or default
    if shape is None:
        raise SpecError(
            "no input shape: the spec has no header and no input_shape was given",
            spec.text,
            (0, 0),
            help="start the spec with a header, e.g. '28x28x1:'",
            hints=[
                Hint(
                    "give_input_shape",
                    "pass input_shape=(28, 28, 1), in Keras order (height, width, channels)",
                    {"example": "28x28x1"},
                )
            ],
        )
    return spec, shape, name


def plan(spec: str | Spec, input_shape: Any = None, **options: Any) -> Plan:
    """Name every layer, place BN/activation/dropout, infer shapes; no Keras involved.

    Args:
        spec: Architecture string, named architecture or parsed :class:`Spec`.
        input_shape: Keras-order input shape, unless the spec has a header or is named.
        **options: ``head``, ``padding``, ``dialect``, ``bn``, ``dropout``, ``activation``,
            ``include_top``, ``pooling``, ``prefix`` as in :func:`kzoo.build`.

    Returns:
        The :class:`Plan`.

    Raises:
        SpecError: For a bad spec or a layer that cannot take its input.
        ValueError: For a bad option value.
    """
    opts = dict(
        head=None,
        padding="same",
        dialect=None,
        bn=False,
        dropout=None,
        activation="relu",
        include_top=True,
        pooling=None,
        prefix="",
    )
    unknown = set(options) - set(opts)
    if unknown:
        raise TypeError(f"Unknown build options: {sorted(unknown)}. Expected: {sorted(opts)}")
    opts.update(options)
    _check_options(opts)
    parsed, shape, arch = resolve(spec, input_shape)
    return _Planner(parsed, shape, opts, arch).run()


def _modifier_role(keyword: str) -> str:
    token = get_token(keyword)
    return token.role if token is not None else "custom"


def _role(layer: Layer) -> str:
    return get_token(layer.keyword).role


def _has_residual(items: tuple[Item, ...]) -> bool:
    for item in items:
        if isinstance(item, Group) and _has_residual(item.items):
            return True
        if isinstance(item, Block) and (
            item.kind in ("R", "PR") or any(_has_residual(b) for b in item.branches)
        ):
            return True
    return False


def _has_block(items: tuple[Item, ...]) -> bool:
    return any(
        isinstance(item, Block) or (isinstance(item, Group) and _has_block(item.items))
        for item in items
    )


def unstrided(items: tuple[Item, ...]) -> tuple[Item, ...]:
    """The items with their convolutions' strides removed (later copies of a residual group)."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, Group):
            out.append(replace(item, items=unstrided(item.items)))
        elif isinstance(item, Block):
            out.append(replace(item, branches=tuple(unstrided(b) for b in item.branches)))
        elif _role(item) == "conv":
            out.append(replace(item, flags=tuple(f for f in item.flags if f[0] != "s")))
        else:
            out.append(item)
    return tuple(out)


def _split_last(
    items: tuple[Item, ...], change: Callable[[Layer], Layer], roles: tuple[str, ...]
) -> tuple[tuple[Item, ...], Layer | None]:
    """Apply ``change`` to the last copy of the last layer of ``roles``; return the new items.

    A repeated item (``64C3x2``, ``[A-B]x2``) is split so that only its last copy changes.
    Returns the changed layer too (None when no layer of those roles is found).
    """
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        before = items[:index]
        after = items[index + 1 :]
        if isinstance(item, Block):
            return items, None  # a merge ends the body: nothing follows it to move
        if isinstance(item, Layer):
            if _role(item) not in roles:
                return items, None
            changed = change(replace(item, times=1))
            head = (replace(item, times=item.times - 1),) if item.times > 1 else ()
            return (*before, *head, changed, *after), changed
        inner, changed = _split_last(item.items, change, roles)
        if changed is None:
            return items, None
        head = (replace(item, times=item.times - 1),) if item.times > 1 else ()
        return (*before, *head, replace(item, items=inner, times=1), *after), changed
    return items, None


def _with_bn(items: tuple[Item, ...]) -> tuple[Item, ...]:
    """Every convolution with '+BN' attached (the BN-relu of a pre-activation body)."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, Group):
            out.append(replace(item, items=_with_bn(item.items)))
        elif isinstance(item, Block):
            out.append(item)
        elif _role(item) == "conv" and not any(m.keyword == "BN" for m in item.modifiers):
            out.append(replace(item, modifiers=(Modifier("BN"), *item.modifiers)))
        else:
            out.append(item)
    return tuple(out)


def _linear(layer: Layer) -> Layer:
    """A layer with no activation unless it names one."""
    if any(_modifier_role(m.keyword) == "activation" for m in layer.modifiers):
        return layer
    return replace(layer, modifiers=(*layer.modifiers, Modifier("linear")))


def _linear_without_bn(layer: Layer) -> Layer:
    """The last conv of a pre-activation body: no BN after it, linear unless it says."""
    mods = tuple(m for m in layer.modifiers if m.keyword != "BN")
    if not any(_modifier_role(m.keyword) == "activation" for m in mods):
        mods = (*mods, Modifier("linear"))
    return replace(layer, modifiers=mods)


def _stride(steps: list[Step]) -> int:
    """The product of the strides of the convolutions and pools among ``steps``."""
    stride = 1
    for step in steps:
        strides = step.params.get("strides")
        if strides and step.token.role in ("conv", "pool"):
            stride *= strides[0]
    return stride


class _Stop(Exception):
    """include_top=False reached the top of the network."""


class _Planner:
    def __init__(self, spec: Spec, shape: Shape, opts: dict[str, Any], arch: str | None) -> None:
        self.spec, self.opts = spec, opts
        self.padding = "valid" if opts["dialect"] == "ciresan" else opts["padding"]
        self.prefix = opts["prefix"] or ""
        self.out = Plan(spec.text, shape, self.prefix + "input_layer", name=arch)
        self.options = dict(spec.options)
        self.shape = shape
        self.x = self.out.input_name  # the tensor the next step reads
        self.names: set[str] = {self.out.input_name}
        self.mode = (
            "resnet"
            if _has_residual(spec.items)
            else ("keras" if _has_block(spec.items) else "vgg")
        )
        self.block, self.conv_i, self.fc_i = 1, 0, 0  # vgg names
        self.last = "input"  # the base name attached layers extend: block1_conv1 -> _bn
        self.custom_counts: dict[str, int] = {}
        self.stage, self.unit, self.pools = 1, 0, 0  # resnet names: conv{stage}_block{unit}
        self.ctx: str | None = None
        self.index = 0
        self.in_shortcut = False
        self.counters: dict[str, int] = {}  # keras names: conv2d, conv2d_1, ...
        self.mixed = -1
        self.nested = 0
        self.depth = 0  # graph-group nesting
        self.pending_pad: Step | None = None
        self.deferred: Layer | None = None  # last layer of a residual body: act moves after add
        self.moved_act: str | None = None
        self.layer_no = -1
        self.head: int | None = None

    def fail(self, reason: str, span: tuple[int, int] | None, help: str | None = None):
        raise SpecError(reason, self.spec.text, span or (0, len(self.spec.text)), help)

    def add(
        self,
        name: str,
        keyword: str | Token,
        params: dict[str, Any],
        label: str,
        span,
        inputs: tuple[str, ...] | None = None,
        shape: Shape | None = None,
    ) -> str:
        unique = self.unique(name)
        token = get_token(keyword) if isinstance(keyword, str) else keyword
        params = {**params, "name": unique}
        if shape is not None:
            out_shape, n = shape, 0
        else:
            try:
                out_shape, n = token.shape(self.shape, params)
            except TokenProblem as problem:
                where = f" at column {span[0] + 1}" if span else ""
                self.fail(f"{label}{where} {problem.reason}", span, problem.help)
            except (ValueError, TypeError, ArithmeticError) as problem:  # a user rule failed
                self.fail(f"{label}: {problem}", span, f"check the shape rule of {keyword!r}")
        self.shape = tuple(out_shape)
        step = Step(unique, token, params, label, span, self.shape, int(n), inputs or (self.x,))
        self.out.steps.append(step)
        self.x = unique
        return name

    def unique(self, name: str) -> str:
        unique, k = self.prefix + name, 0
        while unique in self.names:
            k += 1
            unique = f"{self.prefix}{name}_{k}"
        self.names.add(unique)
        return unique

    def generated(self, base: str) -> str:
        """Keras's own naming: ``conv2d``, ``conv2d_1``, ... (as a fresh session makes them)."""
        n = self.counters.get(base, -1) + 1
        self.counters[base] = n
        return base if n == 0 else f"{base}_{n}"

    # -- the walk ----------------------------------------------------------------------------
    def run(self) -> Plan:
        layers = self.spec.layers()
        roles = [_role(layer) for layer in layers]
        dense = [i for i, role in enumerate(roles) if role == "dense"]
        self.head = dense[-1] if dense else None
        for i, layer in enumerate(layers):
            if layer.keyword == "output" and i != self.head:
                self.fail(
                    "'output' must be the last dense layer",
                    layer.span,
                    "write 'FC' for hidden dense layers",
                )
            if dict(layer.kwargs).get("head") and i != self.head:
                self.fail(
                    "'head=' only applies to the last dense layer",
                    layer.span,
                    "move it to the last FC",
                )
        self.spatial = len(self.shape) > 1
        try:
            for item in self.spec.items:
                stage = self.mode == "resnet" and _has_residual((item,))
                if stage:
                    self.stage, self.unit = self.stage + 1, 0
                self.item(item)
                if stage:
                    self.last, self.pools = "post", 0
        except _Stop:
            pass
        if not self.opts["include_top"] and self.opts["pooling"] and len(self.shape) == 3:
            gap = self.opts["pooling"] == "avg"
            self.add(
                "avg_pool" if gap else "max_pool",
                "GAP" if gap else "GMP",
                {},
                f"(pooling={self.opts['pooling']!r})",
                None,
            )
        return self.out

    def item(self, item: Item) -> None:
        for copy in range(item.times):
            if isinstance(item, Group):
                for inner in item.items:
                    self.item(inner)
            elif isinstance(item, Block):
                if item.kind in ("R", "PR"):
                    self.residual(item, copy)
                else:
                    self.merge(item)
            else:
                self.layer_no += 1
                role = _role(item)
                if not self.opts["include_top"] and self.depth == 0:
                    is_head = self.layer_no == self.head
                    if (self.spatial and role in ("flatten", "global_pool", "dense")) or (
                        not self.spatial and is_head
                    ):
                        raise _Stop
                self.layer(replace(item, times=1) if item.times > 1 else item, role)

    def residual(self, block: Block, copy: int) -> None:
        """``R[body]`` / ``PR[body]``, optionally ``|shortcut``: body, shortcut, add."""
        saved = (self.ctx, self.index, self.in_shortcut, self.last)
        outer = (self.deferred, self.moved_act)  # a residual group inside a residual body
        self.unit += 1
        self.ctx, self.index, self.in_shortcut = f"conv{self.stage}_block{self.unit}", 0, False
        start_x, start_shape = self.x, self.shape
        body = block.branches[0] if copy == 0 else unstrided(block.branches[0])
        self.depth += 1
        source = start_x
        if block.kind == "PR":  # BN-relu before the body; a projection reads it too
            self.add(f"{self.ctx}_preact_bn", "BN", self.bn_params(), "(pre-activation)", None)
            self.add(
                f"{self.ctx}_preact_relu", "relu", {"activation": "relu"}, "(pre-activation)", None
            )
            source = self.x
            body, _ = _split_last(_with_bn(body), _linear_without_bn, ("conv",))
            moved = None
        else:
            body, last = _split_last(
                body, lambda layer: replace(layer), ("conv", "dense", "activation")
            )
            self.deferred, self.moved_act = last, None
        first_step = len(self.out.steps)
        for inner in body:
            self.item(inner)
        if block.kind == "R":
            moved, self.deferred = self.moved_act, None
        body_steps = self.out.steps[first_step:]
        body_x, body_shape = self.x, self.shape
        if len(block.branches) == 2:
            self.x, self.shape, self.in_shortcut = source, start_shape, True
            shortcut = block.branches[1] if copy == 0 else unstrided(block.branches[1])
            # a projection: the activation after the add serves both paths
            shortcut, _ = _split_last(shortcut, _linear, ("conv", "dense"))
            for inner in shortcut:
                self.item(inner)
            short_x, short_shape = self.x, self.shape
        elif body_shape == start_shape and _stride(body_steps) == 1:  # sizes may be None
            short_x, short_shape = start_x, start_shape
        else:
            short_x, short_shape = self.shortcut(
                block, body_steps, start_x, source, start_shape, body_shape
            )
        self.depth -= 1
        if short_shape != body_shape:
            self.fail(
                f"{block.kind}[ at column {block.span[0] + 1} cannot add its shortcut "
                f"({format_shape(short_shape)}) to its body ({format_shape(body_shape)})",
                block.span,
                "the body must keep the input's shape, or its stride must divide it evenly "
                "for the 1x1 projection; write a shortcut after '|' (e.g. 'R[...|64C1s2+BN]')",
            )
        out = f"{self.ctx}_add" if moved not in (None, "linear") else f"{self.ctx}_out"
        self.add(out, MERGE_TOKENS["add"], {}, f"{block.kind}[...]", block.span,
                 (short_x, body_x), body_shape)  # fmt: skip
        if moved not in (None, "linear"):
            self.add(f"{self.ctx}_out", moved, {"activation": moved}, f"+{moved}", block.span)
        block_name = self.ctx
        self.ctx, self.index, self.in_shortcut, _ = saved
        self.deferred, self.moved_act = outer
        self.last = block_name

    def shortcut(
        self,
        block: Block,
        body_steps: list[Step],
        start_x: str,
        source: str,
        start_shape: Shape,
        body_shape: Shape,
    ) -> tuple[str, Shape]:
        """The implicit shortcut: a 1x1 projection (or, in PR, a strided 1x1 max pool)."""
        stride = _stride(body_steps)
        convs = [s for s in body_steps if s.token.role == "conv"]
        span = block.span
        if len(start_shape) != 3 or len(body_shape) != 3 or not convs:
            self.fail(
                f"{block.kind}[ at column {span[0] + 1} cannot add its input "
                f"({format_shape(start_shape)}) to its body ({format_shape(body_shape)})",
                span,
                "a residual body must keep the shape, or end in a convolution",
            )
        if block.kind == "PR" and start_shape[-1] == body_shape[-1]:
            self.x, self.shape = start_x, start_shape  # Keras v2: the raw input, subsampled
            params = dict(pool_size=(1, 1), strides=(stride, stride))
            # named as keras.applications leaves it: Keras's generated name
            name = self.generated("max_pooling2d")
            self.add(name, "MP", params, f"(shortcut MP1s{stride})", span)
            return self.x, self.shape
        last = convs[-1]
        follows_bn = any(
            s.token.role == "batchnorm" and s.inputs == (last.name,) for s in body_steps
        )
        self.x, self.shape = source, start_shape
        params = dict(
            filters=body_shape[-1],
            kernel_size=(1, 1),
            strides=(stride, stride),
            dilation_rate=(1, 1),
            padding="valid",
            use_bias=last.params["use_bias"],
            activation="linear",
            kernel_initializer=None,
        )
        label = f"(shortcut {body_shape[-1]}C1" + (f"s{stride})" if stride > 1 else ")")
        self.add(f"{self.ctx}_0_conv", "C", params, label, span)
        if follows_bn:
            self.add(f"{self.ctx}_0_bn", "BN", self.bn_params(), "(shortcut +BN)", span)
        return self.x, self.shape

    def merge(self, block: Block) -> None:
        """``cat[a|b|...]`` / ``add[a|b|...]``: every branch reads the same input."""
        if self.depth == 0:
            self.mixed, self.nested = self.mixed + 1, 0
        start_x, start_shape = self.x, self.shape
        self.depth += 1
        ends: list[tuple[str, Shape]] = []
        for branch in block.branches:
            self.x, self.shape = start_x, start_shape
            for inner in branch:
                self.item(inner)
            ends.append((self.x, self.shape))
        self.depth -= 1
        shapes = [shape for _, shape in ends]
        where = f"{block.kind}[ at column {block.span[0] + 1}"
        for i, shape in enumerate(shapes[1:], 2):
            first = shapes[0]
            if block.kind == "add" and shape != first:
                self.fail(
                    f"{where} cannot add {format_shape(first)} (branch 1) and "
                    f"{format_shape(shape)} (branch {i})",
                    block.span,
                    "the branches of add[ must end in the same shape",
                )
            if block.kind == "cat" and (len(shape) != len(first) or shape[:-1] != first[:-1]):
                self.fail(
                    f"{where} cannot concatenate {format_shape(first)} (branch 1) and "
                    f"{format_shape(shape)} (branch {i})",
                    block.span,
                    "the branches of cat[ may differ in channels only: keep their height and width",
                )
        if block.kind == "cat":
            channels = [shape[-1] for shape in shapes]
            total = None if None in channels else sum(channels)
            out_shape: Shape = (*shapes[0][:-1], total)
            params: dict[str, Any] = {"axis": -1}
        else:
            out_shape, params = shapes[0], {}
        if self.mode == "keras" and block.kind == "cat":
            if self.depth == 0:
                name = f"mixed{self.mixed}"
            else:
                name, self.nested = f"mixed{self.mixed}_{self.nested}", self.nested + 1
        elif self.mode == "keras":
            name = self.generated("add")
        else:
            name = f"{self.ctx or self.last}_{block.kind}"
        self.add(name, MERGE_TOKENS[block.kind], params, f"{block.kind}[...]", block.span,
                 tuple(x for x, _ in ends), out_shape)  # fmt: skip
        self.last = name

    # -- names -------------------------------------------------------------------------------
    def unit_base(self) -> str:
        """The ResNet name of the next conv or pool: ``conv1``, ``conv2_block1_2``, ..."""
        if self.ctx is None:
            return f"conv{self.stage + 1}" if self.stage > 1 else "conv1"
        if self.in_shortcut:
            return f"{self.ctx}_0"
        self.index += 1
        return f"{self.ctx}_{self.index}"

    def after(self, base: str | None, suffix: str, generated: str) -> str:
        """An attached layer's name: the base plus a suffix, or Keras's generated name."""
        return self.generated(generated) if base is None else f"{base}_{suffix}"

    def base(self) -> str | None:
        return None if self.mode == "keras" else self.last

    def rename_pad(self, base: str | None) -> None:
        """A zero padding takes the name of the layer it pads for: ``conv1_pad``."""
        pad, self.pending_pad = self.pending_pad, None
        if pad is None or base is None or not self.out.steps or self.out.steps[-1] is not pad:
            return
        self.names.discard(pad.name)
        new = self.unique(f"{base}_pad")
        pad.name = pad.params["name"] = self.x = new

    def bn_params(self, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        kwargs = kwargs or {}
        params: dict[str, Any] = {}
        eps = kwargs.get("eps", self.options.get("eps"))
        if eps is not None:
            params["epsilon"] = eps
        if kwargs.get("scale", self.options.get("scale")) is False:
            params["scale"] = False
        return params

    def use_bias(self, layer: Layer, bn: bool) -> bool:
        kwargs = dict(layer.kwargs)
        if "bias" in kwargs:
            return bool(kwargs["bias"])
        return bool(self.options.get("bias", False)) if bn else True

    # -- one layer ---------------------------------------------------------------------------
    def layer(self, layer: Layer, role: str) -> None:
        """Plan one spec layer: the step of its role, then what is attached to it."""
        is_head = self.layer_no == self.head
        mods = {_modifier_role(m.keyword): m for m in layer.modifiers}
        act_mod = mods.get("activation")
        bn = "batchnorm" in mods
        rate = mods["dropout"].args[0] if "dropout" in mods else None
        if role in ("conv", "dense") and not is_head:
            bn = bn or bool(self.opts["bn"])
            if role == "dense":  # dropout after hidden FCs only, as in VGG
                rate = rate if rate is not None else self.opts["dropout"]
        act = act_mod.keyword if act_mod else None
        act = self._ROLES[role](self, layer, bn, act, is_head)
        if role not in ("batchnorm", "dropout", "activation", "pad"):
            self.attach(layer, role, bn, act, rate)

    # Each role's step; returns the activation it leaves to a separate layer (None: none).

    def conv(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        act = act or self.opts["activation"]
        if layer is self.deferred:  # the last conv of a residual body: act after the add
            self.moved_act, act = act, "linear"
        flags, kwargs = dict(layer.flags), dict(layer.kwargs)
        kernel = (layer.args[0], layer.args[1] if len(layer.args) > 1 else layer.args[0])
        params = dict(
            filters=layer.count,
            kernel_size=kernel,
            strides=(flags.get("s", 1),) * 2,
            dilation_rate=(flags.get("d", 1),) * 2,
            padding="valid" if flags.get("v") else self.padding,
            use_bias=self.use_bias(layer, bn),
            activation="linear" if bn else act,
            kernel_initializer=kwargs.get("init"),
        )
        if self.mode == "vgg":
            self.conv_i += 1
            name = base = f"block{self.block}_conv{self.conv_i}"
        elif self.mode == "resnet":
            base = self.unit_base()
            name = f"{base}_conv"
        else:
            name, base = self.generated("conv2d"), None
        self.rename_pad(base)
        self.add(name, "C", params, unparse_layer(layer), layer.span)
        self.last = base
        return act

    def dense(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        label, span, kwargs = unparse_layer(layer), layer.span, dict(layer.kwargs)
        if len(self.shape) > 1:
            self.add("flatten", "F", {}, "(flatten)", span)
        if is_head:
            act = act or kwargs.get("head") or self.opts["head"] or "softmax"
            if act == "softmax" and layer.args[0] == 1:
                self.fail(
                    f"softmax over one unit always outputs 1 ({label} is the head)",
                    span,
                    "use 'FC1+sigmoid' for a binary classifier or 'FC1+linear' for regression",
                )
            name = "predictions"
        else:
            act = act or self.opts["activation"]
            self.fc_i += 1
            name = f"fc{self.fc_i}"
        if layer is self.deferred:
            self.moved_act, act = act, "linear"
        params = dict(
            units=layer.args[0],
            use_bias=self.use_bias(layer, bn),
            activation="linear" if bn else act,
            kernel_initializer=kwargs.get("init"),
        )
        self.last = self.add(name, "FC", params, label, span)
        return act

    def pool(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        size = (layer.args[0], layer.args[1] if len(layer.args) > 1 else layer.args[0])
        flags = dict(layer.flags)
        stride = flags.get("s")
        params = dict(pool_size=size, strides=(stride, stride) if stride else size)
        if flags.get("p"):
            params["padding"] = "same"
        base: str | None
        if self.mode == "vgg":
            name = base = f"block{self.block}_pool"
            self.block, self.conv_i = self.block + 1, 0
        elif self.mode == "resnet":
            if self.ctx is None:
                self.pools += 1
                base = f"pool{self.pools}"
            else:
                base = self.unit_base()
            name = f"{base}_pool"
        else:
            kind = "max_pooling2d" if layer.keyword == "MP" else "average_pooling2d"
            name, base = self.generated(kind), None
        self.rename_pad(base)
        self.add(name, layer.keyword, params, unparse_layer(layer), layer.span)
        self.last = base
        return act

    def pad(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> None:
        before = layer.args[0]
        after = layer.args[1] if len(layer.args) > 1 else before
        params = {"padding": ((before, after), (before, after))}
        base = self.base()
        name = self.after(base, "pad", "zero_padding2d")
        self.add(name, "P", params, unparse_layer(layer), layer.span)
        self.pending_pad = self.out.steps[-1] if base is not None else None

    def global_pool(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        name = "avg_pool" if layer.keyword == "GAP" else "max_pool"
        self.last = self.add(name, layer.keyword, {}, unparse_layer(layer), layer.span)
        return act

    def flatten(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        self.last = self.add("flatten", "F", {}, unparse_layer(layer), layer.span)
        return act

    def batchnorm(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> None:
        name = self.after(self.base(), "bn", "batch_normalization")
        params = self.bn_params(dict(layer.kwargs))
        self.add(name, "BN", params, unparse_layer(layer), layer.span)

    def dropout(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> None:
        rate = {"rate": layer.args[0]}
        name = self.after(self.base(), "dropout", "dropout")
        self.add(name, "D", rate, unparse_layer(layer), layer.span)

    def activation(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> None:
        if layer is self.deferred:  # the body's last layer: it moves after the add
            self.moved_act = layer.keyword
            return
        name, keyword = self.after(self.base(), layer.keyword, "activation"), layer.keyword
        self.add(name, keyword, {"activation": keyword}, unparse_layer(layer), layer.span)

    def custom(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        token = get_token(layer.keyword)
        params = token.params(layer.count, layer.args, dict(layer.flags), dict(layer.kwargs))
        name = self.custom_name(layer.keyword)
        self.last = self.add(name, layer.keyword, params, unparse_layer(layer), layer.span)
        return act

    def custom_name(self, keyword: str) -> str:
        """User layers are named after their keyword and counted: ``gn1``, ``gn2``, ..."""
        n = self.custom_counts[keyword] = self.custom_counts.get(keyword, 0) + 1
        return f"{keyword.lower()}{n}"

    _ROLES: ClassVar[dict[str, Callable[..., str | None]]] = {
        "conv": conv,
        "dense": dense,
        "pool": pool,
        "pad": pad,
        "global_pool": global_pool,
        "flatten": flatten,
        "batchnorm": batchnorm,
        "dropout": dropout,
        "activation": activation,
        "custom": custom,
    }

    def attach(self, layer: Layer, role: str, bn: bool, act: str | None, rate: Any) -> None:
        """BN, then the activation, then dropout after the step; user modifiers follow."""
        base, span = (self.last if self.mode != "keras" else None), layer.span
        if bn:
            self.add(self.after(base, "bn", "batch_normalization"), "BN", self.bn_params(),
                     "+BN", span)  # fmt: skip
        if act not in (None, "linear") and (bn or role not in ("conv", "dense")):
            name = self.after(base, act, "activation")
            self.add(name, act, {"activation": act}, f"+{act}", span)
        if rate:
            name = self.after(base, "dropout", "dropout")
            self.add(name, "D", {"rate": rate}, f"+D{rate}", span)
        for mod in layer.modifiers:  # user modifiers, named like user layers
            if _modifier_role(mod.keyword) == "custom":
                params = get_token(mod.keyword).params(None, mod.args, {}, {})
                label = f"+{mod.keyword}" + ",".join(map(str, mod.args))
                self.add(self.custom_name(mod.keyword), mod.keyword, params, label, span)
