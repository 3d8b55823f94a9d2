"""The :class:`Op` record and the registry of primitives (:data:`OPS`).

A record holds everything tinygraph knows about a primitive: its numpy
``forward``, its ``infer`` shape rule (run when a node is built, so mistakes
surface at build time; the rules live in :mod:`tinygraph.core.shape_rules`),
its ``vjp`` (the backward rule :func:`tinygraph.grad` calls), its batch rule,
and the traits passes and compiled plans ask about (elementwise, view,
identity when shapes agree). A trait is stated here once, as a field, never
restated as a set of op names elsewhere.

Forward functions take numpy arrays positionally and the node's attributes as
keywords; they never mutate their inputs. A vjp rule
``vjp(node, g, needs=None)`` gets the forward node and the gradient node
``g`` of its output and returns one gradient node (or ``None``: no gradient,
e.g. for integer ids) per input of ``node``, built as NEW nodes of the same
graph. It reads stored forward values (the node itself and its inputs) and
never recomputes the forward. ``needs`` (one bool per input) says which
gradients the caller wants, so a rule builds nothing for the others.

>>> from tinygraph.core.ops import OPS
>>> OPS["tanh"].elementwise, OPS["getitem"].view, OPS["matmul"].fresh
(True, True, True)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DtypeError, GraphError, ShapeError
from .arrays import format_bytes, machine_memory
from .shape_rules import DtypeMismatch, Spec, elementwise_float, unary_float
from .shapes import ShapeMismatch, format_shape

__all__ = [
    "Op", "OPS", "LEAF_OPS", "register", "infer", "new_node", "wanted_grads", "unbroadcast",
    "no_gradient", "select", "attr_names", "bind_forward", "MAX_ELEMENTS",
]

# The largest element count an array can have (numpy indexes with a signed intp).
MAX_ELEMENTS = np.iinfo(np.intp).max
# The most bytes the known part of an op's result may need; None: this machine's
# physical memory. A result that cannot fit is refused when the node is built, not
# met as a MemoryError (or hours of swapping) at run time. Raise it to build graphs
# for a larger machine.
MAX_BYTES: int | None = None


@dataclass(frozen=True)
class Op:
    """Everything about one primitive.

    name:    the op's registry key and the default node name.
    arity:   number of inputs, or ``None`` for variadic (concat, stack).
    forward: ``forward(*arrays, **attrs) -> ndarray``; pure numpy.
    infer:   ``infer(specs, attrs) -> (shape, dtype)``; validates attrs too.
    vjp:     ``vjp(node, g, needs=None) -> tuple`` of one gradient node or
             ``None`` per input; ``None`` here means the op has no backward
             rule (``grad`` then raises, naming the op).
    batch:   the batch rule (JAX's batching rule), or ``None`` when the op cannot
             be batched: ``batch(emit, node, args, batched) -> handle``. ``node``
             is the per-step node, ``args`` handles of its inputs (with ``.shape``
             and ``.dtype``), ``batched`` one bool per input: does it carry an
             extra leading axis (all steps at once)? The rule builds, through
             ``emit(op, *args, **attrs)``, the nodes computing the op for every
             step at once and returns the handle whose leading axis is the steps.

    Traits (what passes and plans may assume):

    elementwise: ``forward`` is a numpy ufunc applied elementwise with
             broadcasting and no attrs (or a function that takes ``out=`` as
             one does and says so: ``forward.takes_out``, sigmoid's); its result
             may be written into a dead operand or into a row of a larger array
             with ``out=``.
    view:    the result may share memory with the op's first input (a view,
             or the input itself), so neither may be overwritten while the
             other is alive.
    fresh:   the result is always a new array, never an input or a view of one
             (so a plan may overwrite it in place once it is dead). An op that
             is neither ``view`` nor ``fresh`` (a user's, say) is treated as
             possibly aliasing any of its inputs.
    identity_when_shapes_agree: a reverse-mode helper whose second input only
             lends its runtime shape; it returns its first input itself when
             the two shapes are equal.
    outputs: for an op with several outputs (``scan``): ``outputs(node)`` is how
             many a node has. Its forward returns a tuple; ``unpack`` nodes read
             the outputs, and its vjp gets one cotangent (or None) per output.
    """

    name: str
    arity: int | None
    forward: Callable[..., np.ndarray]
    infer: Callable[[list[Spec], dict[str, Any]], tuple[tuple, np.dtype]]
    vjp: Callable[..., Any] | None = None
    doc: str = ""
    batch: Callable[..., Any] | None = None
    elementwise: bool = False
    view: bool = False
    fresh: bool = False
    identity_when_shapes_agree: bool = False
    outputs: Callable[[Any], int] | None = None


OPS: dict[str, Op] = {}

# Source nodes: their values come from feeds, param storage or the graph itself.
LEAF_OPS = ("input", "param", "const")


def register(op: Op) -> Op:
    """Add ``op`` to the registry (a name may be registered once)."""
    if not isinstance(op, Op):
        raise GraphError(f"register() takes a tinygraph Op record, got {type(op).__name__}")
    if op.name in OPS or op.name in LEAF_OPS:
        raise ValueError(f"op {op.name!r} is already registered")
    OPS[op.name] = op
    return op


def infer(op: str, name: str, specs: list, attrs: dict) -> tuple[tuple, np.dtype]:
    """Run ``op``'s shape rule on input ``specs``, naming node ``name`` in any error."""
    key = _question(op, specs, attrs) if _own_rule(OPS[op].infer) else None
    found = None if key is None else _ANSWERS.get(key)
    if found is None:
        found = _answer(op, name, specs, attrs)
        if key is not None:
            if len(_ANSWERS) >= _MAX_ANSWERS:
                _ANSWERS.clear()
            _ANSWERS[key] = found
    shape, dtype, need = found
    limit = machine_memory() if MAX_BYTES is None else MAX_BYTES
    if need > limit:
        unknown = " (for size 1 of each ? axis)" if None in shape else ""
        raise ShapeError(f"node '{name}' ({op}): the result shape {format_shape(shape)} {dtype} "
                         f"needs {format_bytes(need)}{unknown}, more than this machine's memory "
                         f"({format_bytes(limit)}); for a larger machine raise "
                         "tinygraph.core.op.MAX_BYTES")
    return shape, dtype


# Shape rules already answered, by (op, input specs, attrs): an unrolled graph and its
# gradient ask each rule the same question at every step (an LSTM of 1,000 steps and
# its tg.grad build ~100,000 nodes; remembered answers took tg.grad from 25-29 to
# 15-18 µs a node).
# Only tinygraph's own rules (pure functions of their arguments) and only plain attrs
# (with their types in the key: axis=1 and axis=True hash alike) are remembered; a
# failing rule is never remembered. The memory limit (MAX_BYTES may change) is checked
# on every call.
_ANSWERS: dict[tuple, tuple[tuple, np.dtype, int]] = {}
_MAX_ANSWERS = 4096


def _answer(op: str, name: str, specs: list, attrs: dict) -> tuple[tuple, np.dtype, int]:
    """The rule's shape and dtype, and the bytes of the result's known part."""
    try:
        shape, dtype = OPS[op].infer(specs, attrs)
    except ShapeMismatch as exc:
        given = ", ".join(format_shape(s) for s, _ in specs)
        raise ShapeError(f"node '{name}' ({op}): {exc} [input shapes: {given}]") from None
    except DtypeMismatch as exc:
        raise DtypeError(f"node '{name}' ({op}): {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise GraphError(f"node '{name}' ({op}): invalid attributes {attrs!r}: {exc}") from None
    shape = tuple(shape)
    known = [d for d in shape if d is not None]
    # Python ints never overflow, so this product is exact: a shape numpy could not hold
    # is refused here rather than wrapping around (2**62 * 4 elements read as 0) later.
    elements = _product(known)
    if any(d < 0 for d in known) or elements > MAX_ELEMENTS:
        raise ShapeError(f"node '{name}' ({op}): the result shape {format_shape(shape)} has more "
                         f"elements than an array can hold ({MAX_ELEMENTS})")
    dtype = np.dtype(dtype)
    return shape, dtype, elements * dtype.itemsize


@functools.cache
def _own_rule(rule: Callable) -> bool:
    return getattr(rule, "__module__", "").startswith("tinygraph.")


_PLAIN = (int, float, str, bool, type(None))


def _question(op: str, specs: list, attrs: dict) -> tuple | None:
    """A hashable key for a rule's question, or None when an attr is not plain data."""
    parts = []
    for k, v in attrs.items():
        typed = _typed(v)
        if typed is None:
            return None
        parts.append((k, typed))
    return op, tuple(specs), tuple(parts)


def _typed(value: Any) -> Any:
    if type(value) in _PLAIN:
        return type(value), value
    if type(value) is tuple:
        items = tuple(_typed(v) for v in value)
        return None if None in items else (tuple, items)
    return None


def _product(dims: list[int]) -> int:
    total = 1
    for d in dims:
        total *= int(d)
    return total


@functools.cache
def attr_names(op: str) -> tuple | None:
    """The attribute names ``op``'s forward accepts by keyword; None if it cannot be told.

    >>> attr_names("sum"), attr_names("tanh")
    (('axis', 'keepdims'), ())
    """
    forward = OPS[op].forward
    if isinstance(forward, np.ufunc):
        return ()  # ufunc keywords (out=, where=, dtype=) are never graph attrs
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    arity = OPS[op].arity
    keyword = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    if arity is None:  # forward(*xs, axis=0): only keyword-only parameters are attrs
        return tuple(keyword)
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    return tuple(positional[arity:] + keyword)


def bind_forward(op: str, attrs: dict, in_dtypes: Sequence[np.dtype],
                 dtype: np.dtype) -> Callable[..., np.ndarray]:
    """``op``'s forward with ``attrs`` bound, computing in the node's recorded ``dtype``.

    A shape rule records float64 for ``tanh`` of an int16 node, but numpy
    would compute ``np.tanh`` of int16 in float32 (and of bool in float16):
    ``exp`` of 100 would be ``inf``, and constant folding would disagree with
    the interpreter. So when a float result comes from non-float inputs, a
    ufunc is told its output dtype and a one-input op gets its input cast.
    Every evaluator (interpreter, plans, folding) calls forwards through this.

    >>> f = bind_forward("exp", {}, [np.dtype("int16")], np.dtype("float64"))
    >>> f(np.array([100], dtype=np.int16)).dtype
    dtype('float64')
    """
    forward = OPS[op].forward
    call = functools.partial(forward, **attrs) if attrs else forward
    if dtype.kind != "f" or all(d == dtype for d in in_dtypes):
        return call
    if isinstance(forward, np.ufunc):
        return functools.partial(forward, dtype=dtype)
    if len(in_dtypes) == 1 and in_dtypes[0].kind in "biu" and _computes_floats(op):
        return functools.partial(_cast_then_call, call, dtype)
    return call


def _computes_floats(op: str) -> bool:
    # Ops whose shape rule turns any input into a float (unary_float and its kin);
    # one_hot, size and the like make floats from ids, which must stay ints.
    return OPS[op].infer in (unary_float, elementwise_float)


def _cast_then_call(call: Callable, dtype: np.dtype, x: np.ndarray) -> np.ndarray:
    return call(x.astype(dtype))


# ----------------------------------------------------------- vjp plumbing


def new_node(op: str, *inputs: Any, **attrs: Any) -> Any:
    """A new node of ``op`` in the inputs' graph (vjp rules build only through this)."""
    return inputs[0].graph.add_node(op, list(inputs), attrs)


def wanted_grads(needs: Sequence[bool] | None, *builders: Callable[[], Any] | None) -> tuple:
    """Call the builder of each wanted gradient; ``None`` for the rest."""
    needs = (True,) * len(builders) if needs is None else needs
    return tuple(b() if want and b is not None else None
                 for want, b in zip(needs, builders, strict=True))


def unbroadcast(g: Any, x: Any) -> Any:
    """``g`` summed to ``x``'s shape, unless the static shapes prove no broadcast happened."""
    if g.shape == x.shape and None not in x.shape:
        return g
    return new_node("sum_to", g, x)


def no_gradient(node: Any, g: Any, needs: Sequence[bool] | None = None) -> tuple:
    """The vjp of an op with no gradient by definition (comparisons, argmax, stop_gradient).

    Distinct from ``vjp=None`` (a rule nobody wrote, which ``grad`` reports):
    this one says, by name, that nothing flows back through the op.
    """
    return (None,) * len(node.inputs)


def select(cond: Any, a: Any, b: Any) -> Any:
    """``where(cond, a, b)`` for vjp rules; a number takes the dtype of the node beside it."""
    peer = a if hasattr(a, "graph") else b

    def node(v: Any) -> Any:
        return v if hasattr(v, "graph") else peer.graph.const(v, dtype=peer.dtype)
    return new_node("where", cond, node(a), node(b))
