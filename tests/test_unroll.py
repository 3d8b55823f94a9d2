"""unroll(): one graph, T scopes, shared params, time/template metadata, run(), errors."""

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn


def vanilla(T=5, D=3, H=4, O=2, seed=0):  # noqa: E741
    cell = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=O, seed=seed)
    return cell, rnn.unroll(cell, steps=T)


def numpy_states(xs, U, W, b, s0):
    s, out = s0, []
    for x in xs:
        s = np.tanh(x @ U + s @ W + b)
        out.append(s)
    return np.array(out)


# ------------------------------------------------------------------ structure


def test_one_scope_per_step_and_meta_matches_names():
    T = 6
    _, net = vanilla(T=T)
    by_step: dict[int, list[str]] = {}
    for node in net.graph.nodes.values():
        if "t" in node.meta:
            k = node.meta["t"]
            assert node.name == f"t={k}/{node.meta['template']}"
            by_step.setdefault(k, []).append(node.meta["template"])
        else:
            assert "/" not in node.name  # params and initial state live outside every scope
    assert sorted(by_step) == list(range(T))
    # every step is a copy of the same cell: same templates in the same order
    assert all(by_step[k] == by_step[0] for k in range(T))
    assert by_step[0] == ["x", "mulu", "mulw", "add", "add_b", "s", "mulv", "logits", "o"]
    assert net.steps == T and len(net.inputs) == len(net.states) == len(net.outputs) == T


def test_params_are_shared_by_every_step():
    T = 4
    cell, net = vanilla(T=T)
    assert list(net.graph.params) == ["U", "W", "b", "V", "c"]
    assert list(net.params) == list(cell.params)
    for name, param in net.params.items():
        assert net.graph.params[name] is param
        readers = [n for n in net.graph.nodes.values() if param in n.inputs]
        assert sorted(n.meta["t"] for n in readers) == list(range(T)), name
        np.testing.assert_array_equal(param.value, cell.params[name])


def test_state_flows_from_step_to_step():
    _, net = vanilla(T=3)
    first_reader = [n for n in net.graph.nodes.values() if net.initial_state in n.inputs]
    assert [n.meta["t"] for n in first_reader] == [0]
    for k in range(2):
        readers = [n for n in net.graph.nodes.values() if net.states[k] in n.inputs]
        assert {n.meta["t"] for n in readers} == {k, k + 1}  # own output layer, next step


def test_gates_are_wired_as_the_seed_writes_them():
    _, net = vanilla(T=3)
    p = net.params
    for k in range(3):
        previous = net.initial_state if k == 0 else net.states[k - 1]
        mulu, mulw, add, add_b, s, mulv, logits, o = (
            net.graph[f"t={k}/{name}"]
            for name in ("mulu", "mulw", "add", "add_b", "s", "mulv", "logits", "o"))
        assert mulu.inputs == (net.inputs[k], p["U"])
        assert mulw.inputs == (previous, p["W"])
        assert add.inputs == (mulu, mulw) and add_b.inputs == (add, p["b"])
        assert s.op == "tanh" and s.inputs == (add_b,) and net.states[k] is s
        # the output reads the NEW state, not the previous one
        assert mulv.inputs == (s, p["V"]) and logits.inputs == (mulv, p["c"])
        assert o.op == "softmax" and o.inputs == (logits,)
        assert net.outputs[k] is o and net.logits[k] is logits


def test_handles_and_roles():
    _, net = vanilla(T=2)
    assert net.initial_state.name == "s0" and net.initial_state.op == "input"
    np.testing.assert_array_equal(net.initial_state.attrs["default"], np.zeros((1, 4)))
    assert [n.name for n in net.logits] == ["t=0/logits", "t=1/logits"]
    assert [n.name for n in net.outputs] == ["t=0/o", "t=1/o"]
    assert net.inputs[1].shape == (None, 3) and net.states[1].shape == (None, 4)
    assert net.inputs[0].meta["role"] == "input"
    assert net.states[0].meta["role"] == "state" and net.outputs[0].meta["role"] == "output"
    assert [n.name for n in net.copies("logits")] == ["t=0/logits", "t=1/logits"]
    with pytest.raises(tg.NodeNameError, match="no node 'nope'"):
        net.copies("nope")


def test_lstm_state_is_a_pair_everywhere():
    net = rnn.unroll(rnn.LSTMCell(input_size=2, hidden_size=3), steps=3)
    assert [n.name for n in net.initial_state] == ["h0", "c0"]
    assert [tuple(p.name for p in s) for s in net.states] == [
        ("t=0/h", "t=0/c"), ("t=1/h", "t=1/c"), ("t=2/h", "t=2/c")]
    assert net.outputs[2] is net.states[2][0]


def test_graph_validates_and_is_deterministic():
    _, a = vanilla(T=5)
    _, b = vanilla(T=5)
    a.graph.validate()
    assert list(a.graph.nodes) == list(b.graph.nodes)
    assert [n.meta for n in a.graph.nodes.values()] == [n.meta for n in b.graph.nodes.values()]


def test_graph_can_be_fed_directly_with_batches():
    cell, net = vanilla(T=3)
    xs = np.random.default_rng(1).normal(size=(3, 2, 3))
    got = net.graph.run(net.states[-1], feeds={n: xs[k] for k, n in enumerate(net.inputs)})
    want = numpy_states(xs, cell.params["U"], cell.params["W"], cell.params["b"],
                        np.zeros((2, 4)))[-1]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_a_thousand_steps_build_and_run_without_recursion():
    T = 1000
    cell = rnn.VanillaRNNCell(input_size=8, hidden_size=8, output_size=8, seed=0)
    net = rnn.unroll(cell, steps=T)
    xs = np.random.default_rng(0).normal(size=(T, 8))
    states = net.run(xs)["states"]
    p = cell.params
    np.testing.assert_allclose(states, numpy_states(xs, p["U"], p["W"], p["b"], np.zeros(8)),
                               rtol=0, atol=1e-12)


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize("shape", [(4, 3), (5, 2), (5, 2, 2), (5,), (5, 1, 1, 3)])
def test_run_with_wrong_xs_shape_names_the_step_inputs(shape):
    _, net = vanilla(T=5, D=3)
    with pytest.raises(tg.FeedError, match=r"'t=0/x' … 't=4/x' want xs of shape \(T=5, D=3\) "
                                           r"or \(T=5, B, D=3\); got shape"):
        net.run(np.zeros(shape))


def test_run_with_non_numeric_xs():
    _, net = vanilla(T=2)
    with pytest.raises(tg.FeedError, match="not a numeric array"):
        net.run([["a", "b", "c"], ["d", "e", "f"]])


@pytest.mark.parametrize("h0_shape", [(5,), (3, 4), (4, 1)])
def test_run_with_wrong_initial_state_shape(h0_shape):
    _, net = vanilla(T=2, H=4)
    with pytest.raises(tg.FeedError, match=r"initial state 's0' wants shape \(4,\) or \(B=2, 4\)"):
        net.run(np.zeros((2, 2, 3)), initial_state=np.zeros(h0_shape))


def test_lstm_initial_state_needs_both_parts():
    net = rnn.unroll(rnn.LSTMCell(input_size=2, hidden_size=3), steps=2)
    with pytest.raises(tg.FeedError, match=r"\('h0', 'c0'\)"):
        net.run(np.zeros((2, 2)), initial_state=np.zeros(3))


def test_unroll_argument_errors():
    cell = rnn.GRUCell(input_size=2, hidden_size=3)
    for steps in (0, -2, 1.5, True):
        with pytest.raises(tg.GraphError, match="steps must be an int in \\[1, "):
            rnn.unroll(cell, steps=steps)
    with pytest.raises(tg.GraphError, match="takes a tinygraph_rnn.Cell"):
        rnn.unroll("gru", steps=3)


class _Base(rnn.Cell):
    def declare(self):
        return {"W": rnn.ParamSpec((self.input_size, self.hidden_size))}


class WrongStateCell(_Base):
    def step(self, x, h, p):
        summed = tg.sum(x @ p["W"], axis=0)  # drops the batch axis by mistake
        return summed, summed


class NotATupleCell(_Base):
    def step(self, x, h, p):
        return x @ p["W"]


class NumpyCell(_Base):
    def step(self, x, h, p):
        h_new = np.tanh(x @ p["W"])
        return h_new, h_new


class TypoCell(_Base):
    def step(self, x, h, p):
        h_new = x @ p["Wx"]
        return h_new, h_new


class BadMatmulCell(_Base):
    def step(self, x, h, p):
        h_new = h @ p["W"]  # W is (D, H); the state is (?, H)
        return h_new, h_new


class StepOnlyCell(rnn.Cell):
    def step(self, x, h, p):
        return h, h


def test_wrong_shaped_state_names_cell_and_step():
    with pytest.raises(tg.ShapeError, match=r"WrongStateCell.step at t=0 returned state 'h' = "
                                            r"'t=0/sum' of shape \(4,\); it must have shape "
                                            r"\(\?, 4\)"):
        rnn.unroll(WrongStateCell(input_size=3, hidden_size=4), steps=2)


@pytest.mark.parametrize("cls, match", [
    (NotATupleCell, r"NotATupleCell.step at t=0 must return \(new_state, output\)"),
    (NumpyCell, r"NumpyCell.step at t=0 failed: TypeError"),
    (TypoCell, r"TypoCell.step reads params\['Wx'\], which the cell does not declare; "
               r"declared: W"),
    (BadMatmulCell, r"BadMatmulCell.step at t=0: node 't=0/matmul' \(matmul\)"),
    (StepOnlyCell, r"StepOnlyCell must define declare\(\)"),
])
def test_broken_cells_raise_graph_errors_naming_the_cell(cls, match):
    with pytest.raises(tg.GraphError, match=match):
        rnn.unroll(cls(input_size=3, hidden_size=4), steps=2)


class DeclareOnlyCell(_Base):
    pass


def test_cell_without_step_raises_graph_error():
    with pytest.raises(tg.GraphError, match=r"DeclareOnlyCell must define step"):
        rnn.unroll(DeclareOnlyCell(input_size=3, hidden_size=4), steps=1)


def test_ids_inputs_equal_one_hot_vectors_and_become_a_row_lookup():
    cell = rnn.VanillaRNNCell(input_size=5, hidden_size=4, output_size=5, seed=3)
    ids = np.random.default_rng(0).integers(0, 5, size=(6, 2))
    by_ids = rnn.unroll(cell, steps=6, ids=True)
    by_vectors = rnn.unroll(cell, steps=6)
    got = by_ids.run(ids)
    want = by_vectors.run(np.eye(5)[ids])
    np.testing.assert_allclose(got["outputs"], want["outputs"], rtol=1e-12)
    np.testing.assert_allclose(got["states"], want["states"], rtol=1e-12)
    assert [n.name for n in by_ids.inputs][:2] == ["t=0/ids", "t=1/ids"]
    # What run() evaluates: its view of one sequence of ids, compiled.
    plan = next(iter(by_ids._runners.values())).plan
    ops = [n.op for n in plan.graph.nodes.values()]
    assert "one_hot" not in ops and ops.count("take") == 1  # one lookup for all steps
    with pytest.raises(tg.FeedError, match=r"integer ids in \[0, 5\)"):
        by_ids.run(np.full((6, 2), 5))
    with pytest.raises(tg.FeedError, match="dtype float64"):
        by_ids.run(np.zeros((6, 2)))


@pytest.mark.parametrize("ids", [False, True])
def test_one_sequence_input_feeds_every_step(ids):
    cell = rnn.VanillaRNNCell(input_size=5, hidden_size=4, seed=2)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 5, size=(6, 3))
    xs = np.eye(5)[tokens]
    net = rnn.unroll(cell, steps=6, ids=ids, sequence=True)
    assert net.sequence.name == ("ids" if ids else "xs")
    assert [n.name for n in net.inputs][:2] == (["t=0/ids", "t=1/ids"] if ids
                                               else ["t=0/x", "t=1/x"])
    P = cell.params
    want = numpy_states(xs, P["U"], P["W"], P["b"], np.zeros((3, 4)))
    got = net.run(tokens if ids else xs)
    np.testing.assert_allclose(got["states"], want, rtol=1e-12)
    got_one = net.run(tokens[:, 0] if ids else xs[:, 0])  # unbatched: (T,) or (T, D)
    np.testing.assert_allclose(got_one["states"], want[:, 0], rtol=1e-12)
    # The graph takes the whole sequence at once, and says so when it does not fit.
    direct = net.graph.run(tg.stack(net.states), {net.sequence: tokens if ids else xs})
    np.testing.assert_allclose(direct, want, rtol=1e-12)
    wrong = tokens[:5] if ids else xs[:5]
    with pytest.raises(tg.FeedError, match=f"input '{net.sequence.name}'.*shape"):
        net.graph.run(tg.stack(net.states), {net.sequence: wrong})
    plan = next(iter(net.graph._plans.values()))  # net.run's: no step input is re-stacked
    assert not [n for n in plan.graph.nodes.values()
                if n.op == "stack" and n.inputs[0].op == "getitem"]
