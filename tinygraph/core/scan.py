"""``tg.scan``: a loop over time as ONE node, whose body is a graph traced once.

::

    init ──▶ ┌──────── scan (T steps) ────────┐ ──▶ final carry
             │  carry ─▶ [ body graph ] ─▶ carry'│
    xs[t] ──▶│            │                     │ ──▶ ys (T, …): the per-step outputs
    U, W … ─▶│ (captured) ▼ y_t                 │ ──▶ saved carries (T, …): for the gradient
             └──────────────────────────────────┘

:func:`scan` calls the user's ``step(carry, x)`` once, on inputs of a new
body graph (``node.attrs["body"]``); outer nodes the step reads (params,
other nodes) become body inputs on first use (``Graph.capture``) and inputs
of the scan node. The scan node has several outputs, read by ``unpack``
nodes: the final carry parts, the stacked per-step outputs, and the carries
each step started from (stacked; a plan computes them only when something
reads them, i.e. the gradient).

Its vjp is a reverse scan whose body is the body's own vjp (built by
:func:`tinygraph.core.backprop.backprop` on a copy of the body, never by
calling ``step`` again), reading the saved carries: gradients for ``init``,
every sequence in ``xs`` and every captured node, accumulated over steps in
the carry. The kernel lives in :mod:`tinygraph.exec.scan`.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> xs = g.input("xs", shape=(None, 2))
>>> total, running = tg.scan(lambda c, x: (c + x, c + x), g.const(np.zeros(2)), xs)
>>> g.run([total, running], {"xs": np.ones((3, 2))})
[array([3., 3.]), array([[1., 1.],
       [2., 2.],
       [3., 3.]])]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DtypeError, GraphError, ShapeError
from .node import Node, graph_of
from .shape_rules import Spec
from .shapes import ShapeMismatch, format_shape

__all__ = ["scan", "output_specs", "unpack_all", "output_node"]


def _parts(value: Any, what: str, where: str) -> tuple[list[Node], bool]:
    """A node or a tuple/list of nodes -> (list, was it a single node?)."""
    if isinstance(value, Node):
        return [value], True
    if isinstance(value, list | tuple) and value and all(isinstance(v, Node) for v in value):
        return list(value), False
    raise GraphError(f"{where}: {what} must be a node or a tuple of nodes, got "
                     f"{type(value).__name__}")


def _shapes_agree(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y
                                    for x, y in zip(a, b, strict=True))


def scan(step: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None,
         length: int | None = None, name: str | None = None) -> tuple[Any, Any]:
    """Loop ``carry, y = step(carry, x)`` over the rows of ``xs``, as one graph node.

    Parameters
    ----------
    step : callable
        ``step(carry, x) -> (new_carry, y)``, built from tinygraph primitives.
        Called ONCE, to trace it into the scan's body graph. ``carry`` has
        ``init``'s structure; ``x`` is one row of each of ``xs`` (same
        structure; ``None`` without ``xs``); ``y`` may be ``None``, a node or
        a tuple of nodes.
    init : Node or tuple of Node
        The initial carry (an LSTM's ``(h, c)``).
    xs : Node or tuple of Node, optional
        Sequences sliced along axis 0; their length is T (it may be unknown,
        ``None``, until run time).
    length : int, optional
        T when there are no ``xs`` (or to state it).
    name : str, optional
        The scan node's name.

    Returns
    -------
    (final_carry, ys)
        Nodes of the outer graph: the carry after the last step (``init``'s
        structure) and the per-step outputs stacked along a new axis 0
        (``y``'s structure; ``None`` when the step returns ``None``).

    Raises
    ------
    GraphError
        ``step`` is not callable, fails, or returns the wrong structure;
        ShapeError / DtypeError when the new carry does not match ``init``.
    """
    where = f"scan{'' if name is None else f' {name!r}'}"
    if not callable(step):
        raise GraphError(f"{where}: step must be a function step(carry, x) -> (carry, y), "
                         f"got {type(step).__name__}")
    init_parts, single_carry = _parts(init, "init", where)
    x_parts, single_x = ([], True) if xs is None else _parts(xs, "xs", where)
    graph = graph_of(*init_parts, *x_parts)
    steps = _length(x_parts, length, where)
    with graph._atomic():
        node_name = graph._unique_name("scan") if name is None else graph._explicit_name(name)
        body = type(graph)(f"{node_name}/body")
        # A size-1 axis of init may grow by broadcasting in the first step (a (1, H)
        # zero state meeting a batch of B rows): the body takes any size there.
        carry_in = [body.input(f"carry{i}", shape=tuple(None if d == 1 else d for d in p.shape),
                               dtype=p.dtype) for i, p in enumerate(init_parts)]
        x_in = []
        for i, p in enumerate(x_parts):
            if not p.shape:
                raise ShapeError(f"{where}: xs must have a leading time axis; '{p.name}' is a "
                                 "scalar")
            x_in.append(body.input(f"x{i}", shape=p.shape[1:], dtype=p.dtype))
        body.outer = graph  # outer nodes the step reads (or returns) become body inputs
        try:
            result = _trace(step, carry_in, x_in, single_carry, single_x, where)
            new_carry, ys = _check_result(result, body, carry_in, init_parts, single_carry,
                                          where)
            y_parts, single_y = ([], True) if ys is None else _parts(ys, "the step's y", where)
            y_parts = [body.capture(y) for y in y_parts]
        finally:
            body.outer = None
        consts = list(body.captures)  # outer nodes, in order of first use
        attrs = {"body": body, "num_carry": len(init_parts), "num_xs": len(x_parts),
                 "num_ys": len(y_parts), "length": steps, "reverse": False,
                 "inputs": tuple(n.name for n in body.inputs.values()),
                 "outputs": tuple(n.name for n in [*new_carry, *y_parts, *carry_in])}
        node = graph.add_node("scan", [*init_parts, *x_parts, *consts], attrs, name=node_name)
        outs = unpack_all(node)
    k = len(init_parts)
    final = outs[:k]
    stacked = outs[k:k + len(y_parts)]
    carry_result = final[0] if single_carry else tuple(final)
    if not y_parts:
        return carry_result, None
    return carry_result, (stacked[0] if single_y else tuple(stacked))


def _length(x_parts: list[Node], length: Any, where: str) -> int | None:
    if length is not None and (isinstance(length, bool) or not isinstance(length, int | np.integer)
                               or length < 0):
        raise GraphError(f"{where}: length must be an int >= 0, got {length!r}")
    known = {p.shape[0] for p in x_parts if p.shape and p.shape[0] is not None}
    if length is not None:
        known.add(int(length))
    if len(known) > 1:
        listed = ", ".join(f"'{p.name}' {format_shape(p.shape)}" for p in x_parts)
        raise ShapeError(f"{where}: the sequences have different lengths ({listed}"
                         f"{'' if length is None else f', length={length}'})")
    if not x_parts and length is None:
        raise GraphError(f"{where}: without xs, say how many steps: length=T")
    return known.pop() if known else None


def _trace(step: Callable, carry_in: list[Node], x_in: list[Node], single_carry: bool,
           single_x: bool, where: str) -> Any:
    try:
        return step(carry_in[0] if single_carry else tuple(carry_in),
                    None if not x_in else x_in[0] if single_x else tuple(x_in))
    except GraphError as exc:
        raise type(exc)(f"{where}: in the step function: {exc}") from None
    except Exception as exc:
        raise GraphError(f"{where}: the step function failed: {type(exc).__name__}: {exc}; "
                         "build the step from tinygraph primitives (tg.tanh, @, + …), "
                         "not numpy calls on nodes") from exc


def _check_result(result: Any, body: Any, carry_in: list[Node], init_parts: list[Node],
                  single_carry: bool, where: str) -> tuple[list[Node], Any]:
    if not isinstance(result, tuple) or len(result) != 2:
        raise GraphError(f"{where}: the step must return (new_carry, y), got "
                         f"{type(result).__name__}")
    new_carry, ys = result
    parts, single = _parts(new_carry, "the new carry", where)
    if len(parts) != len(init_parts) or single != single_carry:
        raise GraphError(f"{where}: the step returned a carry of {len(parts)} part(s), init has "
                         f"{len(init_parts)}; return the carry in init's structure")
    checked = []
    for i, (part, first) in enumerate(zip(parts, init_parts, strict=True)):
        part = body.capture(part)
        if not _shapes_agree(part.shape, first.shape):
            raise ShapeError(f"{where}: carry part {i} has shape {format_shape(part.shape)} after "
                             f"a step but init '{first.name}' has {format_shape(first.shape)}")
        if part.dtype != first.dtype:
            raise DtypeError(f"{where}: carry part {i} has dtype {part.dtype} after a step but "
                             f"init '{first.name}' has {first.dtype}")
        checked.append(part)
    return checked, ys


# ----------------------------------------------------------- the records


def output_specs(node: Node) -> list[tuple[tuple, np.dtype]]:
    """(shape, dtype) of each output of a scan node: final carries, stacked ys, saved carries."""
    a = node.attrs
    body, k, ny = a["body"], a["num_carry"], a["num_ys"]
    outs = [body.node(n) for n in a["outputs"]]
    steps = a["length"]
    if steps is None:
        first_x = node.inputs[k] if a["num_xs"] else None
        steps = None if first_x is None else first_x.shape[0]
    # The body's carry inputs, not init: a size-1 axis of init may grow to the batch there.
    specs = [(body.node(n).shape, init.dtype)
             for n, init in zip(a["inputs"][:k], node.inputs[:k], strict=True)]
    specs += [((steps, *o.shape), o.dtype) for o in outs[k:k + ny]]
    specs += [((steps, *o.shape), o.dtype) for o in outs[k + ny:]]
    return specs


def unpack_all(node: Node) -> list[Node]:
    """One ``unpack`` node per output of a scan node, named after what it holds."""
    k, ny = node.attrs["num_carry"], node.attrs["num_ys"]
    prefix = node.graph._prefix()  # names given here are scoped again: pass them relative
    base = node.name[len(prefix):] if node.name.startswith(prefix) else node.name
    labels = ([f"carry{i}" for i in range(k)] + [f"ys{i}" for i in range(ny)]
              + [f"saved{i}" for i in range(k)])
    return [node.graph.add_node("unpack", [node], {"index": i, "shape": shape,
                                                    "dtype": dtype.name},
                                name=f"{base}.{label}")
            for i, ((shape, dtype), label) in enumerate(zip(output_specs(node), labels,
                                                            strict=True))]


_SCAN_ATTRS = ("body", "num_carry", "num_xs", "num_ys", "length", "reverse", "inputs", "outputs")


def output_node(node: Node, index: int) -> Node:
    """The ``unpack`` node reading output ``index`` of a scan: the one :func:`unpack_all`
    named, or a new one (a pass may have built the scan without it)."""
    k, ny = node.attrs["num_carry"], node.attrs["num_ys"]
    label = (f"carry{index}" if index < k else f"ys{index - k}" if index < k + ny
             else f"saved{index - k - ny}")
    found = node.graph.nodes.get(f"{node.name}.{label}")
    if (found is not None and found.op == "unpack" and found.inputs[0] is node
            and found.attrs["index"] == index):
        return found
    shape, dtype = output_specs(node)[index]
    return node.graph.add_node("unpack", [node], {"index": index, "shape": shape,
                                                   "dtype": dtype.name})


def _scan_infer(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    if sorted(attrs) != sorted(_SCAN_ATTRS):
        raise ShapeMismatch(f"a scan node has the attrs {', '.join(_SCAN_ATTRS)}; got "
                            f"{', '.join(map(str, attrs))}")
    body = attrs["body"]
    if not hasattr(body, "inputs") or not hasattr(body, "node"):
        raise ShapeMismatch("attr 'body' must be the scan's body graph")
    counts = [attrs[key] for key in ("num_carry", "num_xs", "num_ys")]
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts) or (
            attrs["length"] is not None and (isinstance(attrs["length"], bool) or not
                                             isinstance(attrs["length"], int)
                                             or attrs["length"] < 0)):
        raise ShapeMismatch("num_carry, num_xs, num_ys must be ints >= 0, length an int or None")
    k, m, ny = counts
    names = attrs["inputs"]
    if not isinstance(names, tuple) or not isinstance(attrs["outputs"], tuple) or not all(
            isinstance(n, str) and n in body for n in (*names, *attrs["outputs"])):
        raise ShapeMismatch("attrs 'inputs' and 'outputs' must name nodes of the body")
    if sorted(names) != sorted(body.inputs):
        raise ShapeMismatch(f"attr 'inputs' must list every input of the body, "
                            f"{sorted(body.inputs)}; got {list(names)}")
    if len(names) != len(specs) or k + m > len(specs):
        raise ShapeMismatch(f"the body takes {len(names)} inputs; the scan node has "
                            f"{len(specs)}")
    for i, (name, (shape, dtype)) in enumerate(zip(names, specs, strict=True)):
        inner = body.node(name)
        want = inner.shape if not k <= i < k + m else shape[1:]
        if inner.op != "input" or not _shapes_agree(inner.shape, want) or inner.dtype != dtype:
            raise ShapeMismatch(f"input {i} is {format_shape(shape)} {dtype}; the body's "
                                f"'{name}' wants {format_shape(inner.shape)} {inner.dtype}"
                                + (" per step" if k <= i < k + m else ""))
    if len(attrs["outputs"]) != 2 * k + ny:
        raise ShapeMismatch("attr 'outputs' must list the carries, ys and saved carries")
    return (), np.dtype("float64")  # a multi-output node: its outputs are read by unpack


def _no_kernel(*args: Any, **attrs: Any) -> Any:
    raise GraphError("a scan node runs through a compiled plan or the interpreter "
                     "(tinygraph.exec.scan), not through its Op record's forward")


def _unpack_infer(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape = attrs["shape"]
    return tuple(shape), np.dtype(attrs["dtype"])
