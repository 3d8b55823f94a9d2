"""Checking a loaded CharLM checkpoint against its own graph before anything uses it.

A ``.tgraph`` file is data: its ``loss`` node's meta could say ``seq_len``
is 0, point ``handles["loss"]`` at a matrix, or carry a vocabulary that
misses a character of the text. Each of those would fail much later with a
raw ``ZeroDivisionError`` or ``KeyError``; here the whole record is compared
with the graph it rides in, and any disagreement is a ``FormatError``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import tinygraph as tg

__all__ = ["check_checkpoint", "restore_training", "state_lists"]

_SIZES = ("hidden_size", "seq_len", "batch_size", "seed")
_NODE_LISTS = ("inputs", "params", "grads", "initial_state", "final_state", "first_state")
_NODES = ("targets", "loss", "first_logits")
_STATES = ("initial_state", "final_state", "first_state")  # one node per state part


def check_checkpoint(graph: tg.Graph, info: dict[str, Any], where: str) -> None:
    """FormatError naming the first field of ``info`` that disagrees with ``graph``."""

    def fail(message: str) -> tg.FormatError:
        return tg.FormatError(f"{where}: damaged CharLM checkpoint: {message}")

    sizes, handles = info.get("sizes"), info.get("handles")
    text, vocab = info.get("text"), info.get("vocab")
    if not isinstance(sizes, dict) or not isinstance(handles, dict):
        raise fail("'sizes' and 'handles' must be dicts")
    for key in _SIZES:
        value = sizes.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or (
                key != "seed" and value < 1):
            raise fail(f"sizes[{key!r}] must be {'an int' if key == 'seed' else 'an int >= 1'}, "
                       f"got {value!r}")
    if not isinstance(text, str) or not isinstance(vocab, str) or not vocab:
        raise fail("'text' and 'vocab' must be strings")
    missing = sorted(set(text) - set(vocab))
    if missing or len(set(vocab)) != len(vocab):
        raise fail(f"the vocabulary misses {missing!r} of the text" if missing
                   else "the vocabulary repeats a character")
    for key in _STATES:  # checkpoints of single-state cells may hold a node, not a list
        if _ours(handles.get(key), graph):
            handles[key] = [handles[key]]
    for key in _NODE_LISTS:
        if not isinstance(handles.get(key), list | tuple) or not all(
                _ours(n, graph) for n in handles[key]):
            raise fail(f"handles[{key!r}] must be a list of nodes of the graph")
    for key in _NODES:
        if not _ours(handles.get(key), graph):
            raise fail(f"handles[{key!r}] must be a node of the graph")
    seq_len, hidden, size = sizes["seq_len"], sizes["hidden_size"], len(vocab)
    expect = [
        ("inputs", len(handles["inputs"]) == seq_len, f"{seq_len} step inputs"),
        ("inputs", all(n.op == "input" and (n.shape == (None,) and n.dtype.kind == "i"
                                            or n.shape == (None, size) and n.dtype.kind == "f")
                       for n in handles["inputs"]),
         f"int input nodes of shape (?,) or one-hot inputs of shape (?, {size})"),
        ("initial_state", all(n.op == "input" and n.shape[1:] == (hidden,)
                              for n in handles["initial_state"]), f"inputs of width {hidden}"),
        ("targets", handles["targets"].op == "input" and handles["targets"].dtype.kind == "i"
         and handles["targets"].shape == (seq_len, None), f"an int input of shape ({seq_len}, ?)"),
        ("loss", handles["loss"].shape == () and handles["loss"].dtype.kind == "f",
         "a float scalar"),
        ("params", all(n.op == "param" for n in handles["params"]), "param nodes"),
        ("grads", [n.shape for n in handles["grads"]] == [p.shape for p in handles["params"]],
         "one gradient per param, of its shape"),
        *[(key, len(handles[key]) == len(handles["initial_state"])
           and all(n.shape[1:] == (hidden,) for n in handles[key]),
           f"one node of width {hidden} per state part") for key in _STATES[1:]],
        ("first_logits", handles["first_logits"].shape[1:] == (size,), f"width {size}"),
    ]
    for key, ok, wanted in expect:
        if not ok:
            raise fail(f"handles[{key!r}] must be {wanted} (seq_len={seq_len}, "
                       f"hidden_size={hidden}, {size} characters)")
    training = info.get("training")
    if not isinstance(training, dict):
        raise fail("'training' must be a dict")
    window, history = training.get("window"), training.get("history")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise fail(f"training['window'] must be an int >= 0, got {window!r}")
    if not isinstance(history, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in history):
        raise fail("training['history'] must be a list of finite numbers")
    adam = training.get("adam")
    if adam is not None:
        steps = adam.get("steps") if isinstance(adam, dict) else None
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise fail(f"training['adam']['steps'] must be an int >= 0, got {steps!r}")
        if not all(isinstance(adam.get(k), list) and all(
                isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in adam[k])
                for k in ("m", "v")):
            raise fail("training['adam'] moments must be lists of float arrays")


def _ours(node: Any, graph: tg.Graph) -> bool:
    return isinstance(node, tg.Node) and node.graph is graph


def restore_training(model: Any, training: dict[str, Any]) -> None:
    """Put a checked checkpoint's training state (carried state, window, history, Adam)
    back into ``model``; ValueError when its arrays do not fit the model."""
    saved = training["state"]  # one array in files from before cells other than vanilla
    state = [np.array(s, dtype=np.float64) for s in (
        saved if isinstance(saved, list | tuple) else [saved])]
    if [s.shape for s in state] != [s.shape for s in model._state]:
        raise ValueError(f"carried state has shapes {[s.shape for s in state]}, expected "
                         f"{[s.shape for s in model._state]}")
    model._state = state
    model._window = int(training["window"])
    model.history = [float(v) for v in training["history"]]
    adam = training["adam"]
    if adam is not None:
        model._optimizer = tg.optim.Adam(model.params, lr=float(adam["lr"]))
        model._optimizer.steps = int(adam["steps"])
        for name in ("m", "v"):
            moments = [np.array(a, dtype=np.float64) for a in adam[name]]
            if [a.shape for a in moments] != [p.shape for p in model.params]:
                raise ValueError(f"Adam moments {name!r} do not match the params' shapes")
            setattr(model._optimizer, name, moments)

def state_lists(handles: dict[str, Any]) -> dict[str, Any]:
    """Handles with every state as a list of parts (older checkpoints hold one node)."""
    return {key: [value] if key.endswith("state") and isinstance(value, tg.Node) else value
            for key, value in handles.items()}

