"""The proof that proposed steps are one loop body (what :mod:`reroll` rewrites).

:mod:`tinygraph.passes.steps` proposes which nodes form step t; :func:`prove`
checks it. Every step must have the same nodes (by template) in the same
order, with equal ops, attrs, shapes and dtypes, and every input of a node
must be, at every step, one of:

- a node of the same step (the same template every time): the body's wiring;
- a node of the previous step (the same template; at step 0 one node outside
  the steps, the same for every reader): a **carry**, its initial value;
- one node outside the steps, the same at every step: a **captured** value;
- a different node outside the steps at every step, all of one shape (the
  outputs of a layer below, made before this loop): a **sequence**, their stack;
- a per-step leaf (an input fed per step, or ``xs[k_t]`` / ``xs[:, k_t]`` of an
  outside ``xs``): a **sequence**, stacked along a new axis 0.

A const that differs between steps (a time embedding row ``pos[t]``) is a
sequence too: the stack of its values. Anything else (a skip connection to
step t-5, a step that reads an attr with its own t in it, a captured value
computed from the steps) is no loop. A read of a value from a few steps back
(``h_{t-2}``) is a chain of carries (:func:`delayed`). Step values read from outside the steps
(outputs, losses, the backward pass) become the scan's per-step outputs; the
last step's carries read from outside become its final carries. A loop that
only sums per-step terms is left to vectorizing, and the last step may lack
values nothing reads (see :func:`only_common_nodes`).
"""

from __future__ import annotations

from typing import Any

from .draft import Draft, Rec, freeze
from .steps import Marks, row_pick

__all__ = ["StepPlan", "prove", "only_common_nodes", "delayed", "MIN_STEPS", "MAX_DELAY"]

MIN_STEPS = 2  # fewer steps are no loop
# Reads of a value from up to this many steps back (h_{t-2}: a second-order cell)
# become a chain of carries; further back is no loop.
MAX_DELAY = 4


def only_common_nodes(steps: dict[int, list[Rec]], count: int, marks: Marks) -> set[str]:
    """Leave nodes only some steps have (a loss on the last step's output) outside the steps.

    They read step values like any reader outside (the proof below makes those
    values per-step outputs); if a step read one of them back, the proof refuses.
    The last step may lack nodes every other step has: values nothing reads after
    the loop (its new state, when the final state is not fetched). The loop computes
    them anyway; their templates are returned.
    """
    names = [{marks[r.id][1] for r in steps[t]} for t in range(count)]
    common = set.intersection(*names[:-1])
    missing = common - names[-1] if count > MIN_STEPS and names[-1] < common else set()
    if not missing:
        common &= names[-1]
    for t, recs in steps.items():
        for rec in recs:
            if marks[rec.id][1] not in common:
                del marks[rec.id]
        steps[t] = [rec for rec in recs if rec.id in marks]
    return missing


class StepPlan:
    """What the proof found: per template position, how each input is wired."""

    def __init__(self) -> None:
        self.wiring: list[list[tuple[str, Any]]] = []  # per node: (kind, detail) per input
        self.carries: dict[str, int] = {}  # carried template -> initial value (rec id)
        self.captures: dict[int, None] = {}  # outside rec ids read by every step
        self.sequences: list[tuple[str, Any]] = []  # ("leaf", template) / ("slice", (id, rows))
        self.outputs: list[str] = []  # templates read from outside (per-step outputs)
        self.delays: dict[str, int] = {}  # template -> the most steps back it is read


def delayed(name: str) -> tuple[str, int]:
    """``(template, k)`` of a carry: ``"3:tanh@2"`` holds ``3:tanh`` of two steps back."""
    base, _, k = name.rpartition("@")
    return (base, int(k)) if base else (name, 1)


def _delayed_carry(carried: str, inits: list[int], plan: StepPlan) -> tuple[str, Any] | None:
    """A read of ``carried`` from ``d = len(inits)`` steps back, before step d a value
    outside (``inits[t]`` at step t: the value of time t - d). It becomes the carries
    ``carried`` (one step back), ``carried@2`` … ``carried@d``: each new one is the one
    before it, their initial values the reads before step d."""
    d = len(inits)
    for k in range(1, d + 1):
        name = carried if k == 1 else f"{carried}@{k}"
        if plan.carries.setdefault(name, inits[d - k]) != inits[d - k]:
            return None  # two readers disagree about a value before the loop
    plan.delays[carried] = max(plan.delays.get(carried, 1), d)
    return ("carry", f"{carried}@{d}")


def prove(draft: Draft, steps: dict[int, list[Rec]], count: int,
           marks: Marks, missing: set[str]) -> StepPlan | None:
    found = [marks[r.id][1] for r in steps[0]]
    templates: list[str] = [name for name in found if name is not None]
    if len(templates) != len(found) or len(set(templates)) != len(templates):
        return None
    step_of_id: dict[int, int] = {}
    by_template: list[dict[str, Rec]] = []
    place = {name: i for i, name in enumerate(templates)}
    for t in range(count):
        want = templates if t < count - 1 else [n for n in templates if n not in missing]
        names = [marks[r.id][1] for r in steps[t]]
        if len(names) != len(want) or set(names) != set(want):
            return None
        # Each step in step 0's order (a rewrite of another loop may have rebuilt some
        # nodes later); the wiring is checked below, so one step's order fits all.
        steps[t] = sorted(steps[t], key=lambda r: place[marks[r.id][1]])
        by_template.append({marks[r.id][1]: r for r in steps[t]})
        for r in steps[t]:
            step_of_id[r.id] = t
    plan = StepPlan()
    for name in templates:
        recs = [by_template[t][name] for t in range(count) if name in by_template[t]]
        first = recs[0]
        if name in missing and (first.op in ("input", "param") or
                                _slice_of_outside(draft, recs, step_of_id) is not None):
            return None  # a per-step leaf the last step lacks: no whole sequence
        if first.op in ("input", "param"):
            if first.op == "param" or any(r.shape != first.shape or r.dtype != first.dtype
                                          for r in recs):
                return None
            plan.wiring.append([])
            if ("leaf", name) not in plan.sequences:
                plan.sequences.append(("leaf", name))
            continue
        if first.op == "const":
            if any(r.dtype != first.dtype or r.shape != first.shape for r in recs):
                return None
            value = freeze(first.attrs)
            if all(freeze(r.attrs) == value for r in recs):
                plan.wiring.append([])
            elif name in missing:
                return None  # a value per step the last step lacks: no whole sequence
            else:  # a value of its own at each step (a time embedding row): a sequence
                plan.wiring.append([("consts", name)])
                plan.sequences.append(("consts", name))
            continue
        sliced = _slice_of_outside(draft, recs, step_of_id)
        if sliced is not None:
            plan.wiring.append([("slice", sliced)])
            if ("slice", sliced) not in plan.sequences:
                plan.sequences.append(("slice", sliced))
            continue
        attrs = freeze(first.attrs)
        if any(r.op != first.op or freeze(r.attrs) != attrs or r.dtype != first.dtype
               or len(r.shape) != len(first.shape) or len(r.inputs) != len(first.inputs)
               for r in recs):
            return None
        wiring = []
        for j in range(len(first.inputs)):
            kind = _input_kind(draft, recs, j, step_of_id, plan, marks, count)
            if kind is None:
                return None
            wiring.append(kind)
        plan.wiring.append(wiring)
    # Outputs: step values read from outside the steps (or fetched); reads from two or
    # more steps later would be a skip connection the body cannot carry.
    # A carried value read from outside only at the last step (the final state) is the
    # scan's final carry, not a stored output: a loop that stores nothing per step.
    for name in templates:
        if by_template[0][name].op in ("input", "param", "const"):
            continue  # a leaf stays as it is: readers outside keep reading it
        for t in range(count):
            rec = by_template[t].get(name)
            if rec is None:
                continue  # the last step lacks it: nothing reads it there
            final_carry = t == count - 1 and name in plan.carries
            for reader in draft.readers(rec.id):
                later = step_of_id.get(reader.id)
                if later is None:
                    if name not in plan.outputs and not final_carry:
                        plan.outputs.append(name)
                elif not 0 <= later - t <= plan.delays.get(name, 1):
                    return None
            if rec.id in draft.root_set and name not in plan.outputs and not final_carry:
                plan.outputs.append(name)
    if not plan.carries:
        return None  # no recurrence: nothing for a scan to carry
    if _only_a_running_sum(plan, templates, by_template[0]):
        return None  # sum(loss_t for t ...): vectorizing over time does it in one op
    outside = [*plan.carries.values(), *plan.captures,
               *(seq[1][0] for seq in plan.sequences if seq[0] == "slice"),
               *(v for seq in plan.sequences if seq[0] == "stack" for v in seq[1])]
    if draft.descendants(list(step_of_id)).intersection(outside):
        return None  # a value the loop reads is computed from its steps: no scan can run first
    return plan


def _only_a_running_sum(plan: StepPlan, templates: list[str], step: dict[str, Rec]) -> bool:
    """The loop only accumulates: every carry is read by adds and subtractions alone
    and none is a per-step output (a loss summed over steps, not a recurrence)."""
    if any(name in plan.outputs for name in plan.carries):
        return False
    return all(step[name].op in ("add", "sub")
               for name, wiring in zip(templates, plan.wiring, strict=True)
               if any(kind == "carry" for kind, _ in wiring))


def _slice_of_outside(draft: Draft, recs: list[Rec],
                      step_of_id: dict[int, int]) -> tuple[int, tuple[int, ...], int] | None:
    """``xs[k_t]`` (or ``xs[:, k_t]``) at every step t, of one outside ``xs``:
    ``(id of xs, (k_0, k_1, …), axis)``."""
    first = recs[0]
    pick = row_pick(first)
    if pick is None:
        return None
    source, axis = first.inputs[0], pick[0]
    if source in step_of_id or len(draft.recs[source].shape) <= axis:
        return None
    rows = []
    for r in recs:
        pick = row_pick(r)
        if pick is None or r.inputs != [source] or pick[0] != axis:
            return None
        rows.append(pick[1])
    return source, tuple(rows), axis


def _one_more_row(draft: Draft, sliced: tuple[int, tuple[int, ...], int]
                  ) -> tuple[int, tuple[int, ...], int] | None:
    """The rows a template the last step lacks reads, with the last step's row added:
    the next in a run of rows one apart (forwards or backwards), if the array has it."""
    source, rows, axis = sliced
    step = rows[1] - rows[0] if len(rows) > 1 else 1
    if step not in (1, -1) or any(b - a != step for a, b in zip(rows, rows[1:], strict=False)):
        return None
    nxt = rows[-1] + step
    size = draft.recs[source].shape[axis]
    if nxt < 0 or type(size) is not int or nxt >= size:
        return None
    return source, (*rows, nxt), axis


def _input_kind(draft: Draft, recs: list[Rec], j: int, step_of_id: dict[int, int],
                plan: StepPlan, marks: Marks, count: int) -> tuple[str, Any] | None:
    """How input ``j`` of a template's nodes (``recs``: one per step; one fewer when
    the last step lacks the template) is wired at every step, or None."""
    sources = [r.inputs[j] for r in recs]
    steps = [step_of_id.get(s) for s in sources]
    names = [marks.get(s, (0, None))[1] for s in sources]
    if all(st == t for t, st in enumerate(steps)) and len(set(names)) == 1:
        return ("inner", names[0])
    if all(st == t - 1 for t, st in enumerate(steps) if t) and steps[0] is None \
            and len(set(names[1:])) == 1:
        carried, init = names[1], sources[0]
        assert carried is not None  # a record in a step has a template (checked by the caller)
        if plan.carries.setdefault(carried, init) != init:
            return None  # two readers disagree about the carry's initial value
        return ("carry", carried)
    for delay in range(2, min(MAX_DELAY, count - 1) + 1):
        if (all(st is None for st in steps[:delay])
                and all(st == t - delay for t, st in enumerate(steps) if t >= delay)
                and len(set(names[delay:])) == 1):
            carried = names[delay]
            assert carried is not None  # a record in a step has a template
            return _delayed_carry(carried, sources[:delay], plan)
    if all(st is None for st in steps) and len(set(sources)) == 1:
        plan.captures[sources[0]] = None
        return ("capture", sources[0])
    if all(st is None for st in steps):  # xs[k_t] made outside the steps (a shared read)
        sliced = _slice_of_outside(draft, [draft.recs[s] for s in sources], step_of_id)
        if sliced is not None and len(recs) < count:
            sliced = _one_more_row(draft, sliced)
        if sliced is not None:
            if ("slice", sliced) not in plan.sequences:
                plan.sequences.append(("slice", sliced))
            return ("picked", sliced)
        recs_in = [draft.recs[src] for src in sources]
        if len(set(sources)) == len(sources) == count and all(  # T values made before
                r.shape == recs_in[0].shape and r.dtype == recs_in[0].dtype for r in recs_in):
            seq = ("stack", tuple(sources))
            if seq not in plan.sequences:
                plan.sequences.append(seq)
            return ("stacked", seq[1])
    return None
