"""The ``scan`` and ``unpack`` op records: the scan's vjp is a reverse scan of its body's.

:mod:`tinygraph.core.scan` builds scan nodes (``tg.scan``) and knows their
outputs; this module holds what reverse mode needs: :func:`replay` (a body
copied into another graph) and the vjp rule, which differentiates a copy of
the body with :func:`~tinygraph.core.backprop.backprop` and runs it backwards
over the steps, reading the values the forward loop stored.
"""

from __future__ import annotations

from typing import Any

from ..errors import GraphError
from .backprop import backprop
from .node import Node
from .op import Op, unbroadcast
from .scan import _no_kernel, _scan_infer, _unpack_infer, output_node, unpack_all

__all__ = ["SCAN", "UNPACK", "replay"]


def replay(source: Any, target: Any, mapping: dict[Node, Node]) -> dict[Node, Node]:
    """Copy every node of graph ``source`` not in ``mapping`` into ``target``, wiring
    inputs through ``mapping`` (which grows); returns it."""
    unpacked: dict[Node, list[Node]] = {}
    for node in source.nodes.values():
        if node in mapping:
            continue
        if node.op == "input":
            raise GraphError(f"replay: input '{node.name}' of '{source.name}' is not mapped")
        if node.op == "const":
            mapping[node] = target.const(node.value, dtype=node.dtype)
        elif node.op == "param":
            mapping[node] = target.capture(node) if target.encloses(node.graph) else node
        elif node.op == "unpack" and node.inputs[0].op == "scan":
            mapping[node] = unpacked[mapping[node.inputs[0]]][node.attrs["index"]]
        else:
            mapping[node] = target.add_node(node.op, [mapping[s] for s in node.inputs],
                                            dict(node.attrs))
            if node.op == "scan":  # its outputs, named as the vjp of a scan expects
                unpacked[mapping[node]] = unpack_all(mapping[node])
    return mapping


def _scan_vjp(node: Node, gs: list[Any], needs: tuple[bool, ...] | None = None) -> tuple:
    """The reverse scan of the body's vjp (see the module docstring)."""
    a = node.attrs
    body, k, m, ny = a["body"], a["num_carry"], a["num_xs"], a["num_ys"]
    graph = node.graph
    needs = needs or (True,) * len(node.inputs)
    inits, xs, consts = node.inputs[:k], node.inputs[k:k + m], node.inputs[k + m:]
    finals = [output_node(node, i) for i in range(k)]
    saved = [output_node(node, k + ny + i) for i in range(k)]
    y_cots = [(j, g) for j, g in enumerate(gs[k:k + ny]) if g is not None]
    const_wanted = [j for j, c in enumerate(consts) if needs[k + m + j]]
    x_wanted = [j for j in range(m) if needs[k + j]]

    bwd = type(body)(f"{node.name}/vjp")
    cot_in = [bwd.input(f"dcarry{i}", shape=p.shape, dtype=p.dtype)
              for i, p in enumerate(body.node(n) for n in a["inputs"][:k])]
    acc_in = [bwd.input(f"dconst{j}", shape=consts[j].shape, dtype=consts[j].dtype)
              for j in const_wanted]
    body_in = [body.node(n) for n in a["inputs"]]
    carry_t = [bwd.input(f"carry{i}", shape=p.shape, dtype=p.dtype)
               for i, p in enumerate(body_in[:k])]
    x_t = [bwd.input(f"x{j}", shape=p.shape, dtype=p.dtype) for j, p in enumerate(body_in[k:k + m])]
    body_outs = [body.node(n) for n in a["outputs"]]
    gy_t = [bwd.input(f"dy{j}", shape=body_outs[k + j].shape, dtype=body_outs[k + j].dtype)
            for j, _ in y_cots]
    # The forward's per-step outputs, stored by it: the vjp rules read these values
    # (tanh's 1 - y²) instead of recomputing them from the saved carries.
    stored = [j for j in range(ny) if body_outs[k + j].op != "input"]
    stored_t = [bwd.input(f"y{j}", shape=body_outs[k + j].shape, dtype=body_outs[k + j].dtype)
                for j in stored]
    # New carries are stored too: step t's is the carry step t + 1 started from.
    ys_nodes = {body_outs[k + j] for j in stored}
    carried = [i for i in range(k) if body_outs[i].op != "input"
               and body_outs[i] not in ys_nodes and not a["reverse"]]
    carried_t = [bwd.input(f"next{i}", shape=body_outs[i].shape, dtype=body_outs[i].dtype)
                 for i in carried]
    const_t = [bwd.input(f"const{j}", shape=p.shape, dtype=p.dtype)
               for j, p in enumerate(body_in[k + m:])]
    mapping = dict(zip(body_in, [*carry_t, *x_t, *const_t], strict=True))
    mapping = replay(body, bwd, mapping)
    boundary = len(bwd)  # nodes from here on are the gradient's
    seeds = [(mapping[body_outs[i]], cot_in[i]) for i in range(k)]
    seeds += [(mapping[body_outs[k + j]], g) for (j, _), g in zip(y_cots, gy_t, strict=True)]
    targets = [*carry_t, *[x_t[j] for j in x_wanted], *[const_t[j] for j in const_wanted]]
    found = backprop(bwd, seeds, targets, join_slices=True)
    zeros = [f if f is not None else bwd.add_node("zeros_like", [t])
             for f, t in zip(found, targets, strict=True)]
    d_carry = zeros[:k]
    d_x = zeros[k:k + len(x_wanted)]
    d_const = zeros[k + len(x_wanted):]
    new_acc = [acc + d for acc, d in zip(acc_in, d_const, strict=True)]
    carry_outs = [*d_carry, *new_acc]
    reads = {mapping[body_outs[k + j]]: s for j, s in zip(stored, stored_t, strict=True)}
    reads.update({mapping[body_outs[i]]: s for i, s in zip(carried, carried_t, strict=True)})
    bwd = _reading_stored(bwd, reads, boundary)
    battrs = {"body": bwd, "num_carry": len(carry_outs),
              "num_xs": k + m + len(gy_t) + len(stored_t) + len(carried_t),
              "num_ys": len(d_x), "length": a["length"], "reverse": not a["reverse"],
              "inputs": tuple(n.name for n in bwd.inputs.values()),
              "outputs": tuple(n.name for n in [*carry_outs, *d_x, *cot_in, *acc_in])}
    start = [g if g is not None else graph.add_node("zeros_like", [f])
             for g, f in zip(gs[:k], finals, strict=True)]
    start += [graph.add_node("zeros_like", [consts[j]]) for j in const_wanted]
    # The new carry of every step: the saved ones after the first, then the final one
    # (sliced after joining, so T = 0 gives no rows).
    nexts = [graph.add_node("getitem", [graph.add_node("concat", [
        saved[i], graph.add_node("expand_dims", [finals[i]], {"axis": 0})], {"axis": 0})],
        {"index": ((1, None, None),)}) for i in carried]
    seq = [*saved, *xs, *[g for _, g in y_cots], *[output_node(node, k + j) for j in stored],
           *nexts]
    back = graph.add_node("scan", [*start, *seq, *consts], battrs)
    parts = unpack_all(back)
    n_carry = len(carry_outs)
    grads: list[Any] = [unbroadcast(parts[i], inits[i]) if needs[i] else None for i in range(k)]
    gx = dict(zip(x_wanted, parts[n_carry:n_carry + len(x_wanted)], strict=True))
    grads += [gx.get(j) for j in range(m)]
    gc = dict(zip(const_wanted, parts[k:n_carry], strict=True))
    grads += [gc.get(j) for j in range(len(consts))]
    return tuple(grads)


def _reading_stored(bwd: Any, reads: dict, boundary: int) -> Any:
    """A copy of ``bwd`` whose gradient nodes (index >= boundary) read the stored forward
    values in ``reads`` (replayed node -> input holding its stored value) instead."""
    new = type(bwd)(bwd.name)
    made: dict[Any, Any] = {}
    for node in bwd.nodes.values():
        if node.op == "input":
            made[node] = new.input(node.name, shape=node.shape, dtype=node.dtype)
        elif node.op == "const":
            made[node] = new.const(node.value, name=node.name, dtype=node.dtype)
        else:
            srcs = [reads.get(src, src) if node.index >= boundary else src
                    for src in node.inputs]
            made[node] = new.add_node(node.op, [made[src] for src in srcs], dict(node.attrs),
                                      name=node.name)
    return new


SCAN = Op("scan", None, _no_kernel, _scan_infer, _scan_vjp,
          doc="carry, y = body(carry, x_t) for each step t: final carry, stacked ys, saved carries",
          outputs=lambda node: 2 * node.attrs["num_carry"] + node.attrs["num_ys"])
UNPACK = Op("unpack", 1, lambda packed, index, shape, dtype: packed[index], _unpack_infer,
            lambda node, g, needs=None: (None,), view=True,
            doc="output number index of a multi-output node (scan)")
