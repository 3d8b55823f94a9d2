"""The general optimizer, measured the way users write code (issue 17's rows).

Every row is a ratio to a plain numpy loop of the same maths (or hand-written
BPTT), timed side by side in one process: interleaved rounds, medians, BLAS
limited to one thread (threadpoolctl). Graphs are written as users write them:
``rnn.unroll`` and ``net.run``, a loss summed per step or on stacked logits,
``tg.grad`` of it, ``g.compile`` once.

    python benchmarks/general.py            # prints a markdown table
    python benchmarks/general.py --runs 3   # three fresh processes: median [min-max]

Fresh processes matter on a noisy virtual machine: where numpy puts a run's
arrays moves a ratio by up to ~10 % (the control row times the GRU's numpy
loop against the same loop on copies of its arrays), and a process keeps its
placement for all its rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import tinygraph as tg
import tinygraph_rnn as rnn

sys.path.insert(0, str(Path(__file__).parent))
import workloads as wl  # noqa: E402

ROUNDS = 15
# A timing covers at least this long (several calls of a sub-millisecond variant), as
# timeit does: one call of W1's 0.2 ms forward is mostly timer and cache noise.
MIN_TIMING_S = 2e-3
WARMUP_CALLS = 20


def median_times(variants: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict:
    """Seconds per call of each variant: interleaved rounds (every variant in turn, every
    other round in reverse order), the median over rounds. Each variant is warmed up
    first, as pyperf does: 20 calls or 0.2 s, whichever is shorter (W1's forward needs
    ~20 calls to settle, 0.38-0.40 of the numpy loop after 3 and 0.35-0.36 after 20;
    the numpy loop is warmed alike). Each timed block starts with one untimed call: a
    variant timed right after the numpy BPTT measured 1.09-1.20x slower than the same
    callable timed after another tinygraph variant (A/A, AMD EPYC), paying for the caches
    and freed memory the reference left; a training loop calls its step back to back."""
    calls = {}
    for name, f in variants.items():
        start, count = time.perf_counter(), 0
        while count < WARMUP_CALLS and (count < 3 or time.perf_counter() - start < 0.2):
            f()
            count += 1
        once = (time.perf_counter() - start) / count
        calls[name] = max(1, int(np.ceil(MIN_TIMING_S / max(once, 1e-9))))
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants.items())
    for r in range(rounds):
        # Every other round in reverse order: a variant timed right after another one
        # measured up to 8 % slower than the same variant later in the round (A/A).
        for name, f in (order if r % 2 == 0 else order[::-1]):
            n = calls[name]
            f()  # untimed: the caches and freed memory the previous variant left are not its cost
            start = time.perf_counter()
            for _ in range(n):
                f()
            times[name].append((time.perf_counter() - start) / n)
    return {k: float(np.median(v)) for k, v in times.items()}


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def numpy_gru(X, p, H):
    h, out = np.zeros((X.shape[1], H)), []
    for x in X:
        gi, gh = x @ p["W_ih"] + p["b_ih"], h @ p["W_hh"] + p["b_hh"]
        r, z = _sigmoid(gi[:, :H] + gh[:, :H]), _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        out.append(h)
    return out


def numpy_lstm(X, p, H):
    h = c = np.zeros((X.shape[1], H))
    out = []
    for x in X:
        g = x @ p["W_ih"] + p["b_ih"] + h @ p["W_hh"] + p["b_hh"]
        i, f, o = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H]), _sigmoid(g[:, 3 * H:])
        c = f * c + i * np.tanh(g[:, 2 * H:3 * H])
        h = o * np.tanh(c)
        out.append(h)
    return out


def numpy_mgu(X, p):
    h, out = np.zeros((X.shape[1], p["U_f"].shape[0])), []
    for x in X:
        f = _sigmoid(x @ p["W_f"] + h @ p["U_f"] + p["b_f"])
        h = (1 - f) * h + f * np.tanh(x @ p["W_h"] + (f * h) @ p["U_h"] + p["b_h"])
        out.append(h)
    return out


def vanilla_rows() -> list[tuple[str, float, str]]:
    rows = []
    for p in wl.PROBLEMS:
        xs, targets, P = p.data()
        P = wl.aligned(P)
        net = wl.tinygraph_net(p, P, "optimized")
        forward = median_times({"numpy loop": wl.numpy_loop(p, xs, targets, P),
                                "net.run": lambda net=net, xs=xs: net.run(xs)})
        rows.append((f"vanilla {p.name} forward, `net.run` on a default unroll",
                     forward["net.run"] / forward["numpy loop"], "numpy loop"))
        per_step, stacked = _training(p, xs, targets, P, True), _training(p, xs, targets, P,
                                                                           False)
        bptt = wl.numpy_bptt(p, xs, targets, P)
        times = median_times({"bptt": bptt, "per-step": per_step, "stacked": stacked})
        rows.append((f"vanilla {p.name} forward+backward, loss per step",
                     times["per-step"] / times["bptt"], "numpy BPTT"))
        rows.append((f"vanilla {p.name} forward+backward, loss on stacked logits",
                     times["stacked"] / times["bptt"], "numpy BPTT"))
    return rows


def _training(p, xs, targets, P, per_step: bool):
    net = wl.tinygraph_net(p, P, "optimized")
    if per_step:
        tgt = net.graph.input("targets", shape=(p.steps, None), dtype="int64")
        loss = tg.cross_entropy(net.logits[0], tgt[0])
        for t in range(1, p.steps):
            loss = loss + tg.cross_entropy(net.logits[t], tgt[t])
        loss = loss / float(p.steps)
    else:
        loss = wl.tinygraph_loss(p, net)
    grads = tg.grad(loss, [net.params[k] for k in "UWbVc"])
    feeds = wl.tinygraph_feeds(p, net, xs)
    feeds["targets"] = targets
    fn = net.graph.compile([loss, *grads], inputs=list(feeds))
    return lambda: fn(**feeds)


def gated_rows() -> list[tuple[str, float, str]]:
    rng = np.random.default_rng(0)
    T, B, D = 100, 32, 64
    X = rng.normal(size=(T, B, D))
    rows = []
    gru = rnn.unroll(rnn.GRUCell(input_size=D, hidden_size=256, seed=0), T)
    p = {k: v.value for k, v in gru.params.items()}
    copies, X_copy = {k: v.copy() for k, v in p.items()}, X.copy()
    times = median_times({"numpy": lambda: numpy_gru(X, p, 256),
                          "copies": lambda: numpy_gru(X_copy, copies, 256)})
    rows.append(("control: the GRU's numpy loop on copies of its arrays (placement noise)",
                 times["copies"] / times["numpy"], "numpy loop"))
    for name, cell, ref in [
        ("GRU", rnn.GRUCell(input_size=D, hidden_size=256, seed=0), numpy_gru),
        ("LSTM", rnn.LSTMCell(input_size=D, hidden_size=256, seed=0), numpy_lstm),
    ]:
        net = rnn.unroll(cell, T)
        p = {k: v.value for k, v in net.params.items()}
        times = median_times({"numpy": lambda ref=ref, p=p: ref(X, p, 256),
                              "net.run": lambda net=net: net.run(X)})
        rows.append((f"{name} (T=100, B=32, D=64, H=256) forward",
                     times["net.run"] / times["numpy"], "numpy loop"))
    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from test_scan import MinimalGatedUnit  # the docs' custom cell

    net = rnn.unroll(MinimalGatedUnit(input_size=D, hidden_size=128, seed=0), T)
    p = {k: v.value for k, v in net.params.items()}
    times = median_times({"numpy": lambda: numpy_mgu(X, p), "net.run": lambda: net.run(X)})
    rows.append(("MinimalGatedUnit (T=100, B=32, D=64, H=128) forward",
                 times["net.run"] / times["numpy"], "numpy loop"))
    return rows + small_gated_rows()


def small_gated_rows() -> list[tuple[str, float, str]]:
    """The gated cells at W1's and W3's sizes (one sequence, small steps), where a step
    costs its numpy calls rather than its arithmetic: forward against the numpy loop."""
    from test_scan import MinimalGatedUnit  # the docs' custom cell (tests/ is on the path)

    rows = []
    for T, D, H in [(50, 64, 128), (1000, 8, 8)]:
        X = np.random.default_rng(1).normal(size=(T, 1, D))
        for name, cell, ref in [
            ("GRU", rnn.GRUCell(input_size=D, hidden_size=H, seed=0),
             lambda X, p, H=H: numpy_gru(X, p, H)),
            ("LSTM", rnn.LSTMCell(input_size=D, hidden_size=H, seed=0),
             lambda X, p, H=H: numpy_lstm(X, p, H)),
            ("MinimalGatedUnit", MinimalGatedUnit(input_size=D, hidden_size=H, seed=0),
             lambda X, p: numpy_mgu(X, p)),
        ]:
            net = rnn.unroll(cell, T)
            p = {k: v.value for k, v in net.params.items()}
            times = median_times({"numpy": lambda ref=ref, p=p, X=X: ref(X, p),
                                  "net.run": lambda net=net, X=X: net.run(X)})
            rows.append((f"{name} (T={T}, B=1, D={D}, H={H}) forward",
                         times["net.run"] / times["numpy"], "numpy loop"))
    return rows


def torch_rows() -> list[tuple[str, float, str]]:
    """GRU / LSTM forward+backward, linear head and per-step mean cross-entropy, against
    ``torch.nn.GRU``/``LSTM`` (fused kernels, one thread, float64). Skipped without torch."""
    try:
        import torch
    except ImportError:
        return []
    torch.set_num_threads(1)
    T, B, D, H, V = 100, 32, 64, 256, 64
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(T, B, D)), rng.integers(0, V, (T, B))
    rows = []
    for name, cell_type, module_type in [("GRU", rnn.GRUCell, torch.nn.GRU),
                                         ("LSTM", rnn.LSTMCell, torch.nn.LSTM)]:
        module, head = module_type(D, H).double(), torch.nn.Linear(H, V).double()
        sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
        cell = cell_type.from_torch(sd["weight_ih_l0"], sd["weight_hh_l0"], sd["bias_ih_l0"],
                                    sd["bias_hh_l0"])
        net = rnn.unroll(cell, T)
        g = net.graph
        V_out = g.param("V_out", head.weight.detach().numpy().T.copy())
        c_out = g.param("c_out", head.bias.detach().numpy().copy())
        targets = g.input("targets", shape=(T, None), dtype="int64")
        loss = tg.cross_entropy(net.outputs[0] @ V_out + c_out, targets[0])
        for t in range(1, T):
            loss = loss + tg.cross_entropy(net.outputs[t] @ V_out + c_out, targets[t])
        loss = loss / float(T)
        grads = tg.grad(loss, [*net.params.values(), V_out, c_out])
        feeds = {n.name: X[t] for t, n in enumerate(net.inputs)} | {"targets": Y}
        fn = g.compile([loss, *grads], inputs=list(feeds))
        xt, yt = torch.tensor(X), torch.tensor(Y)

        def torch_step(module=module, head=head, xt=xt, yt=yt):
            module.zero_grad()
            head.zero_grad()
            out, _ = module(xt)
            total = sum(torch.nn.functional.cross_entropy(head(out[t]), yt[t])
                        for t in range(T)) / T
            total.backward()

        times = median_times({"torch": torch_step, "tinygraph": lambda fn=fn, f=feeds: fn(**f)})
        rows.append((f"{name} (T=100, B=32, D=64, H=256) forward+backward, loss per step",
                     times["tinygraph"] / times["torch"], f"torch nn.{name} (fused)"))
    return rows


def per_step_training(net, X, Y, classes: int, rng) -> tuple[Callable, dict, list]:
    """``net`` with a linear head ``V_out``, ``c_out`` (drawn from ``rng``) and the mean of
    its per-step cross-entropies, written per step as users write it: the compiled loss
    and gradients, its feeds (the T step rows of ``X``, ``Y`` as targets) and the params
    in the gradients' order."""
    g, steps = net.graph, len(net.outputs)
    hidden = net.outputs[0].shape[-1]
    V_out = g.param("V_out", rng.normal(size=(hidden, classes)) / np.sqrt(hidden))
    c_out = g.param("c_out", np.zeros(classes))
    targets = g.input("targets", shape=(steps, None), dtype="int64")
    loss = tg.cross_entropy(net.outputs[0] @ V_out + c_out, targets[0])
    for t in range(1, steps):
        loss = loss + tg.cross_entropy(net.outputs[t] @ V_out + c_out, targets[t])
    loss = loss / float(steps)
    params = [*net.params.values(), V_out, c_out]
    fn = g.compile([loss, *tg.grad(loss, params)], inputs=[*net.inputs, targets])
    feeds = {n.name: X[t] for t, n in enumerate(net.inputs)} | {"targets": Y}
    return fn, feeds, params


def mgu_torch_row(torch) -> tuple[str, float, str]:
    """The MinimalGatedUnit (docs/rnn.md) forward+backward against the same cell as a
    PyTorch eager loop (autograd through T steps of its equations), linear head and
    per-step mean cross-entropy."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from test_scan import MinimalGatedUnit  # the docs' custom cell

    T, B, D, H, V = 100, 32, 64, 128, 64
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(T, B, D)), rng.integers(0, V, (T, B))
    net = rnn.unroll(MinimalGatedUnit(input_size=D, hidden_size=H, seed=0), T)
    fn, feeds, params = per_step_training(net, X, Y, V, rng)
    tp = {n.name: torch.tensor(n.value, requires_grad=True) for n in params}
    xt, yt = torch.tensor(X), torch.tensor(Y)

    def torch_step():
        for p in tp.values():
            p.grad = None
        h, total = torch.zeros(B, H, dtype=torch.float64), 0.0
        for t in range(T):
            f = torch.sigmoid(xt[t] @ tp["W_f"] + h @ tp["U_f"] + tp["b_f"])
            cand = torch.tanh(xt[t] @ tp["W_h"] + (f * h) @ tp["U_h"] + tp["b_h"])
            h = (1 - f) * h + f * cand
            total = total + torch.nn.functional.cross_entropy(h @ tp["V_out"] + tp["c_out"],
                                                              yt[t])
        (total / T).backward()
        return float(total.detach()) / T

    ours, theirs = float(fn(**feeds)[0]), torch_step()
    if abs(ours - theirs) > 1e-10:  # the same maths, else the timing compares nothing
        raise AssertionError(f"MGU losses differ: tinygraph {ours!r}, torch {theirs!r}")
    times = median_times({"torch": torch_step, "tinygraph": lambda: fn(**feeds)})
    return ("MinimalGatedUnit (T=100, B=32, D=64, H=128) forward+backward, loss per step",
            times["tinygraph"] / times["torch"], "PyTorch eager loop")


def charlm_row(torch, steps: int = 20) -> tuple[str, float, str]:
    """A ``CharLM`` training step (the demo's sizes: H=64, 25 steps, 32 streams) against
    the same model in PyTorch: ``nn.RNN`` on one-hot inputs, ``nn.Linear``, mean
    cross-entropy, ``clip_grad_norm_``, ``Adam``, one thread, float64."""
    from tinygraph_rnn.lm_cli import DEMO_SIZES
    from tinygraph_rnn.vocab import load_corpus

    lm = rnn.CharLM.from_text(load_corpus(), seed=0, **DEMO_SIZES)
    V, H, k, B = len(lm.vocab), DEMO_SIZES["hidden_size"], lm.seq_len, lm.batch_size
    windows = [lm.data.window(i, k, B) for i in range(steps)]
    model, head = torch.nn.RNN(V, H).double(), torch.nn.Linear(H, V).double()
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=0.01)
    eye = torch.eye(V, dtype=torch.float64)
    state = [torch.zeros(1, B, H, dtype=torch.float64)]

    def torch_train():
        for x, y in windows:
            opt.zero_grad()
            out, h = model(eye[torch.from_numpy(x)], state[0])
            loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V),
                                                     torch.from_numpy(y).reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            state[0] = h.detach()

    times = median_times({"torch": torch_train,
                          "tinygraph": lambda: lm.train(steps, verbose=False)})
    return ("`CharLM` training step (H=64, 25 steps, batch 32, Adam, clipping)",
            times["tinygraph"] / times["torch"], "PyTorch nn.RNN + Linear + Adam")


def measure() -> list[tuple[str, float, str]]:
    """Every row, in this process."""
    with threadpool_limits(1):
        rows = vanilla_rows() + gated_rows() + torch_rows()
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            rows += [mgu_torch_row(torch), charlm_row(torch)]
    return rows


def table(runs: list[list[tuple[str, float, str]]]) -> str:
    """A markdown table of one run's ratios, or of several runs' median [min-max]."""
    lines = ["| written as a user would | tinygraph / reference | reference |", "|---|---:|---|"]
    for i, (name, _, ref) in enumerate(runs[0]):
        ratios = sorted(run[i][1] for run in runs)
        figure = f"{ratios[0]:.2f}" if len(ratios) == 1 else (
            f"{float(np.median(ratios)):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]")
        lines.append(f"| {name} | {figure} | {ref} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if "--json" in argv:  # one run, for a parent process
        print(json.dumps(measure()))
        return
    count = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 1
    if count == 1:
        print(table([measure()]))
        return
    runs = []
    for i in range(count):  # one after another: two at once would share the 2 cores
        out = subprocess.run([sys.executable, __file__, "--json"], check=True,
                             capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(f"run {i + 1}/{count} done", file=sys.stderr, flush=True)
    print(table(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
