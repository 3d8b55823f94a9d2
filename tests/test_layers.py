"""Stacked and Bidirectional against torch.nn.GRU/LSTM(num_layers=2[, bidirectional=True]).

The reference numbers come from tests/data/rnn_goldens.npz, written once by
tests/data/make_rnn_goldens.py with PyTorch (float64); these tests do not
import torch. Checked: outputs, final states (h_n, c_n), the gradients of
``sum(outputs * R) + sum(h_n * Rh) [+ sum(c_n * Rc)]`` w.r.t. every weight,
the input and the initial states, and packed (variable-length) batches.
"""

from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn

GOLD = np.load(Path(__file__).parent / "data" / "rnn_goldens.npz", allow_pickle=False)
CELL = {"gru": rnn.GRUCell, "lstm": rnn.LSTMCell}
OURS = {"weight_ih": "W_ih", "weight_hh": "W_hh", "bias_ih": "b_ih", "bias_hh": "b_hh"}
TOL = 1e-10


def case(name):
    prefix = name + "__"
    return {k[len(prefix):]: GOLD[k] for k in GOLD.files if k.startswith(prefix)}


def torch_arrays(c):
    return {k: v for k, v in c.items() if k.startswith(("weight_", "bias_"))}


def our_param(torch_name):
    """'weight_ih_l1_reverse' -> ('l1_reverse', 'W_ih'): our prefix and cell param name."""
    for torch_key, ours in OURS.items():
        if torch_name.startswith(torch_key + "_"):
            return torch_name[len(torch_key) + 1:], ours
    raise AssertionError(torch_name)


def direction_states(c, lstm):
    """Per direction (torch's order), its initial state and its golden final state."""
    n = c["h0"].shape[0]
    if lstm:
        return ([(c["h0"][i], c["c0"][i]) for i in range(n)],
                [(c["h_n"][i], c["c_n"][i]) for i in range(n)])
    return [c["h0"][i] for i in range(n)], [c["h_n"][i] for i in range(n)]


def flat(state):
    return state if isinstance(state, tuple) else (state,)


def check_grads(graph, outputs, finals, c, lstm, xs_node, initial_nodes, feeds, param_of):
    """Build the golden loss on our nodes; compare every gradient with PyTorch's."""
    out = tg.stack(outputs, axis=0) if isinstance(outputs, list) else outputs
    loss = tg.sum(out * graph.const(c["R"]))
    for i, final in enumerate(finals):
        parts = flat(final)
        loss = loss + tg.sum(parts[0] * graph.const(c["Rh"][i]))
        if lstm:
            loss = loss + tg.sum(parts[1] * graph.const(c["Rc"][i]))
    names = [k for k in torch_arrays(c)]
    wrt = [param_of(n) for n in names] + [xs_node] + list(initial_nodes)
    grads = graph.run(tg.grad(loss, wrt), feeds)
    for name, got in zip(names, grads, strict=False):
        want = c["grad__" + name]
        np.testing.assert_allclose(got, want.T if want.ndim == 2 else want, atol=TOL, rtol=0,
                                   err_msg=name)
    np.testing.assert_allclose(grads[len(names)], c["grad__xs"], atol=TOL, rtol=0)
    initial_grads = grads[len(names) + 1:]
    golden = ([g for i in range(c["h0"].shape[0]) for g in (c["grad__h0"][i], c["grad__c0"][i])]
              if lstm else list(c["grad__h0"]))
    for got, want in zip(initial_grads, golden, strict=True):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


@pytest.mark.parametrize("mode", ["unroll", "scan"])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_bidirectional_two_layers_equals_torch(kind, mode):
    c, lstm = case(f"{kind}_bi"), kind == "lstm"
    model = rnn.Bidirectional.from_torch(CELL[kind], torch_arrays(c))
    T = c["xs"].shape[0]
    net = rnn.unroll(model, T) if mode == "unroll" else rnn.scan(model)
    assert isinstance(net, rnn.BidirectionalNet)
    initial, finals = direction_states(c, lstm)
    out = net.run(c["xs"], initial_state=tuple(initial))
    np.testing.assert_allclose(out["outputs"], c["outputs"], atol=TOL, rtol=0)
    for got, want in zip(out["final_state"], finals, strict=True):
        for g_part, w_part in zip(flat(got), flat(want), strict=True):
            np.testing.assert_allclose(g_part, w_part, atol=TOL, rtol=0)
    # Gradients, through the graph's own nodes: w.r.t. weights, xs and initial states.
    init_nodes = [p for state in net.initial_state for p in flat(state)]
    feeds = {net.inputs: c["xs"], net.mask: np.ones(c["xs"].shape[:2] + (1,))}
    feeds.update(zip(init_nodes, [p for s in initial for p in flat(s)], strict=True))

    def param_of(torch_name):
        prefix, ours = our_param(torch_name)
        return net.params[f"{prefix}_{ours}"]

    check_grads(net.graph, net.outputs, net.final_state, c, lstm, net.inputs, init_nodes,
                feeds, param_of)


@pytest.mark.parametrize("mode", ["unroll", "scan"])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_stacked_two_layers_equals_torch(kind, mode):
    c, lstm = case(f"{kind}_stack"), kind == "lstm"
    stack = rnn.Stacked.from_torch(CELL[kind], torch_arrays(c))
    T = c["xs"].shape[0]
    net = rnn.unroll(stack, T, sequence=True) if mode == "unroll" else rnn.scan(stack)
    initial, finals = direction_states(c, lstm)
    init_values = [p for s in initial for p in flat(s)]  # l0_h, (l0_c,) l1_h, (l1_c)
    out = net.run(c["xs"], initial_state=tuple(init_values))
    np.testing.assert_allclose(out["outputs"], c["outputs"], atol=TOL, rtol=0)
    golden_final = [p for s in finals for p in flat(s)]
    for got, want in zip(out["states"], golden_final, strict=True):
        np.testing.assert_allclose(got[-1], want, atol=TOL, rtol=0)
    xs_node = net.sequence if mode == "unroll" else net.inputs
    final = net.states[-1] if mode == "unroll" else net.final_state
    n = 2 if lstm else 1
    parts = flat(final)
    finals_by_layer = [tuple(parts[k * n:(k + 1) * n]) for k in range(2)]
    init_nodes = list(flat(net.initial_state))
    feeds = {xs_node: c["xs"], **dict(zip(init_nodes, init_values, strict=True))}

    def param_of(torch_name):
        prefix, ours = our_param(torch_name)
        return net.params[f"{prefix}_{ours}"]

    check_grads(net.graph, net.outputs, finals_by_layer, c, lstm, xs_node, init_nodes, feeds,
                param_of)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_packed_sequences_equal_torch(kind):
    lstm = kind == "lstm"
    bi, st = case(f"{kind}_bi"), case(f"{kind}_stack")
    model = rnn.Bidirectional.from_torch(CELL[kind], torch_arrays(bi))
    for net in (rnn.scan(model), rnn.unroll(model, bi["xs"].shape[0])):
        out = net.run(bi["xs"], lengths=bi["lengths"])
        np.testing.assert_allclose(out["outputs"], bi["packed_outputs"], atol=TOL, rtol=0)
        for i, got in enumerate(out["final_state"]):
            np.testing.assert_allclose(flat(got)[0], bi["packed_h_n"][i], atol=TOL, rtol=0)
            if lstm:
                np.testing.assert_allclose(got[1], bi["packed_c_n"][i], atol=TOL, rtol=0)
    stack = rnn.Stacked.from_torch(CELL[kind], torch_arrays(st))
    for net in (rnn.scan(stack), rnn.unroll(stack, st["xs"].shape[0])):
        out = net.run(st["xs"], lengths=st["lengths"])
        np.testing.assert_allclose(out["outputs"], st["packed_outputs"], atol=TOL, rtol=0)
        want = ([p for k in range(2) for p in (st["packed_h_n"][k], st["packed_c_n"][k])]
                if lstm else list(st["packed_h_n"]))
        for got, w in zip(out["states"], want, strict=True):
            np.testing.assert_allclose(got[-1], w, atol=TOL, rtol=0)


def test_stacked_runs_every_layer_as_the_cells_alone():
    """Reference: the two cells' own nets, layer 1 fed layer 0's outputs."""
    rng = np.random.default_rng(3)
    c0 = rnn.VanillaRNNCell(3, 5, seed=1)
    c1 = rnn.VanillaRNNCell(5, 4, output_size=2, seed=2)
    xs = rng.normal(size=(6, 2, 3))
    out = rnn.scan(rnn.Stacked([c0, c1])).run(xs)
    h0 = rnn.unroll(c0, 6).run(xs)
    h1 = rnn.unroll(c1, 6).run(h0["outputs"])
    np.testing.assert_allclose(out["outputs"], h1["outputs"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(out["states"][0], h0["states"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(out["states"][1], h1["states"], atol=1e-12, rtol=0)


def test_stacked_in_charlm():
    text = "the cat sat on the mat. " * 30
    vocab = len(set(text))
    stack = rnn.Stacked([rnn.GRUCell(vocab, 6, seed=0), rnn.GRUCell(6, 6, seed=1)])
    lm = rnn.CharLM.from_text(text, cell=stack, seed=1, hidden_size=6, seq_len=5,
                              batch_size=3)
    before = lm.validation_loss()
    lm.train(30, lr=0.03, verbose=False)
    assert lm.validation_loss() < 0.8 * before


def test_layer_mistakes_are_graph_errors():
    gru = rnn.GRUCell(2, 3)
    with pytest.raises(tg.GraphError, match="non-empty list"):
        rnn.Stacked([])
    with pytest.raises(tg.GraphError, match="Bidirectional"):
        rnn.Stacked([rnn.Bidirectional(gru)])
    with pytest.raises(tg.ShapeError, match="layer 1 .*input_size=5"):
        rnn.unroll(rnn.Stacked([gru, rnn.GRUCell(5, 3)]), 2)
    with pytest.raises(tg.ShapeError, match="input_size=3 but reads 6"):
        rnn.scan(rnn.Bidirectional([gru, rnn.GRUCell(3, 3)]))
    with pytest.raises(tg.GraphError, match="unknown or unused .*weight_hh_l0_reverse.*Bidir"):
        rnn.Stacked.from_torch(rnn.GRUCell, torch_arrays(case("gru_bi")))
    with pytest.raises(tg.GraphError, match="no 'weight_ih_l0_reverse'"):
        rnn.Bidirectional.from_torch(rnn.GRUCell, torch_arrays(case("gru_stack")))
    net = rnn.scan(rnn.Bidirectional(gru))
    with pytest.raises(tg.FeedError, match="lengths wants integers of shape"):
        net.run(np.ones((4, 2, 2)), lengths=[4])
    with pytest.raises(tg.FeedError, match=r"in \[1, T=4\]"):
        net.run(np.ones((4, 2, 2)), lengths=[4, 0])
    with pytest.raises(tg.FeedError, match="one state per direction"):
        net.run(np.ones((4, 2, 2)), initial_state=np.zeros(3))


@pytest.mark.parametrize("make", [
    lambda: rnn.VanillaRNNCell(3, 4, output_size=3, seed=1),
    lambda: rnn.LSTMCell(3, 4, seed=2),
    lambda: rnn.Stacked([rnn.GRUCell(3, 4, seed=3), rnn.GRUCell(4, 2, seed=4)]),
])
def test_lengths_equal_each_sequence_alone(make):
    cell = make()
    rng = np.random.default_rng(7)
    T, lengths = 6, np.array([6, 1, 3, 5])
    xs = rng.normal(size=(T, len(lengths), 3))
    for net in (rnn.unroll(cell, T), rnn.scan(cell)):
        out = net.run(xs, lengths=lengths)
        states = flat(out["states"])
        for b, n in enumerate(lengths):
            alone = rnn.scan(cell).run(xs[:n, b])  # one unbatched sequence of its own length
            np.testing.assert_allclose(out["outputs"][:n, b], alone["outputs"], atol=1e-12,
                                       rtol=0)
            assert np.all(out["outputs"][n:, b] == 0)
            for part, alone_part in zip(states, flat(alone["states"]), strict=True):
                np.testing.assert_allclose(part[:n, b], alone_part, atol=1e-12, rtol=0)
                # held after the end: every later row is the last real state
                np.testing.assert_array_equal(part[n:, b],
                                              np.broadcast_to(part[n - 1, b], part[n:, b].shape))


def test_bidirectional_lengths_equal_each_sequence_alone():
    model = rnn.Bidirectional([rnn.LSTMCell(3, 4, seed=1), rnn.LSTMCell(8, 2, seed=2)])
    rng = np.random.default_rng(8)
    T, lengths = 5, np.array([2, 5, 4])
    xs = rng.normal(size=(T, 3, 3))
    out = rnn.scan(model).run(xs, lengths=lengths)
    for b, n in enumerate(lengths):
        alone = rnn.unroll(model, int(n)).run(xs[:n, b])
        np.testing.assert_allclose(out["outputs"][:n, b], alone["outputs"], atol=1e-12, rtol=0)
        assert np.all(out["outputs"][n:, b] == 0)
        for got, want in zip(out["final_state"], alone["final_state"], strict=True):
            for g_part, w_part in zip(got, want, strict=True):
                np.testing.assert_allclose(g_part[b], w_part, atol=1e-12, rtol=0)
    with pytest.raises(tg.FeedError, match="one int"):
        rnn.scan(model).run(xs[:, 0], lengths=[3])


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_unrolled_bidirectional_training_rerolls_both_directions(kind):
    # Each direction of each layer is its own loop in t=<k> scopes; the backward one
    # runs from T-1 down to 0. All four must reroll, and the per-step loss over the
    # joined outputs vectorize: the optimized step does not grow with T. Values and
    # gradients equal the plain plan's (the graph exactly as built).
    c = case(f"{kind}_bi")
    model = rnn.Bidirectional.from_torch(CELL[kind], torch_arrays(c))
    sizes = {}
    for T in (5, 15):
        net = rnn.unroll(model, T)
        g = net.graph
        loss = sum(tg.sum(o * o) for o in net.outputs) / T
        params = list(net.params.values())
        fetch = [loss, *tg.grad(loss, params)]
        rng = np.random.default_rng(T)
        feeds = {"xs": rng.normal(size=(T, 2, c["xs"].shape[-1])), "mask": np.ones((T, 2, 1))}
        fast = g.compile(fetch, inputs=list(feeds))
        plain = g.compile(fetch, inputs=list(feeds), optimize=False)
        for got, want in zip(fast(**feeds), plain(**feeds), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
        loops = [s.node.op for s in fast.plan.steps
                 if s.node.op in ("scan", "recurrence", "reverse_recurrence")]
        assert len(loops) >= 8, loops  # 4 loops forward, 4 backward
        sizes[T] = len(fast.plan.steps)
    assert sizes[5] == sizes[15], sizes


def test_unrolled_bidirectional_forward_rerolls_both_directions():
    # net.run fetches every step's joined output and both final states; after the
    # forward direction is rerolled, some of the backward direction's nodes are rebuilt
    # later in the draft, so its steps list their nodes in another order: still one loop.
    c = case("gru_bi")
    model = rnn.Bidirectional.from_torch(CELL["gru"], torch_arrays(c))
    net = rnn.unroll(model, c["xs"].shape[0])
    initial, finals = direction_states(c, lstm=False)
    out = net.run(c["xs"], initial_state=tuple(initial))
    np.testing.assert_allclose(out["outputs"], c["outputs"], atol=TOL, rtol=0)
    plan = list(net.graph._plans.values())[-1]
    loops = [n for n in plan.graph.nodes.values() if n.op in ("scan", "recurrence")]
    assert len(loops) == 4, [n.op for n in plan.graph.nodes.values()]  # 2 layers x 2 directions
