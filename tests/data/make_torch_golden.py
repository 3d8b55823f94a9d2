"""Generate PyTorch golden files for the recurrent cells (RNN, GRU, LSTM).

PyTorch is *not* a dependency of tinygraph; this script is only needed to
regenerate the committed ``.npz`` files.  Run it from the repository root with
a separate virtual environment that has torch (CPU build) and numpy::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tests/data/make_torch_golden.py

Importing this module does nothing (torch is imported inside ``main``), so
pytest's ``--doctest-modules`` collection works without torch installed.

Output files (next to this script), all written with ``np.savez`` as plain
float64 arrays (no pickled objects; load with ``allow_pickle=False``):

* ``torch_golden_rnn.npz``  -- ``torch.nn.RNN(nonlinearity="tanh")``
* ``torch_golden_gru.npz``  -- ``torch.nn.GRU``
* ``torch_golden_lstm.npz`` -- ``torch.nn.LSTM``

Every module has 1 layer, ``batch_first=False``, ``bias=True``, input size
``D = 5``, hidden size ``H = 7``, and is run for ``T = 6`` steps.  Each file
holds two cases, distinguished by the key prefix ``P``:

* ``P = "batched"``:   batch ``B = 3``; ``xs`` is ``(T, B, D)``, states ``(B, H)``.
* ``P = "unbatched"``: torch's unbatched input; ``xs`` is ``(T, D)``, states ``(H,)``.

Keys per case (``G`` = number of gates: 1 for RNN, 3 for GRU, 4 for LSTM):

``P_weight_ih`` (G*H, D), ``P_weight_hh`` (G*H, H), ``P_bias_ih`` (G*H,), ``P_bias_hh`` (G*H,)
    The module parameters in PyTorch layout (``weight_ih_l0`` etc.).  Gate
    blocks are stacked along axis 0 in PyTorch's order: ``r, z, n`` for GRU
    and ``i, f, g, o`` for LSTM.  Drawn with numpy from uniform(-0.5, 0.5)
    and copied into the module (torch's own init is not used).
``P_xs``
    Inputs, standard normal, shape (T, [B,] D).
``P_h0``
    Initial hidden state, uniform(-0.5, 0.5), shape ([B,] H).
``P_c0`` (LSTM only)
    Initial cell state, uniform(-0.5, 0.5), shape ([B,] H).
``P_outputs``
    Per-step hidden states h_1..h_T (the module's first output), (T, [B,] H).
``P_h_n``
    Final hidden state h_T, shape ([B,] H) (the layer axis is dropped).
``P_c_n`` (LSTM only)
    Final cell state c_T, shape ([B,] H).
``P_cells`` (LSTM only)
    Per-step cell states c_1..c_T, (T, [B,] H), obtained by running the LSTM
    one step at a time and collecting each step's ``c``.
``P_R``
    Fixed standard-normal array with the shape of ``P_outputs``; the loss is
    ``L = sum(outputs * R)``.
``P_grad_weight_ih``, ``P_grad_weight_hh``, ``P_grad_bias_ih``, ``P_grad_bias_hh``
    dL/d(parameter), same shapes as the parameters.
``P_grad_xs``, ``P_grad_h0`` (and ``P_grad_c0`` for LSTM)
    dL/d(input), dL/d(initial state).

The cell equations (PyTorch's documented conventions) are::

    RNN:  h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)
    GRU:  r = sig(x W_ir^T + b_ir + h W_hr^T + b_hr)
          z = sig(x W_iz^T + b_iz + h W_hz^T + b_hz)
          n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
          h' = (1 - z) * n + z * h
    LSTM: i, f, g, o = sig, sig, tanh, sig of (x W_i*^T + b_i* + h W_h*^T + b_h*)
          c' = f * c + i * g;  h' = o * tanh(c')

After writing, the script reloads every file with ``allow_pickle=False`` and
recomputes the RNN outputs with plain numpy from the saved weights to prove
the layout interpretation (to 1e-12).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

D = 5  # input size
H = 7  # hidden size
T = 6  # time steps
B = 3  # batch size of the batched case

OUT_DIR = Path(__file__).resolve().parent

# kind -> (number of gates, numpy seed)
KINDS = {"rnn": (1, 1001), "gru": (3, 2002), "lstm": (4, 3003)}


def _make_module(torch, kind):
    common = dict(input_size=D, hidden_size=H, num_layers=1, bias=True, batch_first=False)
    if kind == "rnn":
        return torch.nn.RNN(nonlinearity="tanh", **common)
    if kind == "gru":
        return torch.nn.GRU(**common)
    return torch.nn.LSTM(**common)


def _case(torch, kind, batched, rng):
    """Build one case and return its arrays (keys without prefix)."""
    gates, _ = KINDS[kind]
    is_lstm = kind == "lstm"
    state_shape = (B, H) if batched else (H,)
    x_shape = (T, B, D) if batched else (T, D)

    arrays = {
        "weight_ih": rng.uniform(-0.5, 0.5, size=(gates * H, D)),
        "weight_hh": rng.uniform(-0.5, 0.5, size=(gates * H, H)),
        "bias_ih": rng.uniform(-0.5, 0.5, size=(gates * H,)),
        "bias_hh": rng.uniform(-0.5, 0.5, size=(gates * H,)),
        "xs": rng.standard_normal(x_shape),
        "h0": rng.uniform(-0.5, 0.5, size=state_shape),
    }
    if is_lstm:
        arrays["c0"] = rng.uniform(-0.5, 0.5, size=state_shape)
    arrays["R"] = rng.standard_normal((T, *state_shape))

    module = _make_module(torch, kind).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(module, name + "_l0").copy_(torch.from_numpy(arrays[name]))

    def leaf(name):
        return torch.tensor(arrays[name], dtype=torch.float64, requires_grad=True)

    xs = leaf("xs")
    h0 = leaf("h0")
    # torch wants states with a leading num_layers axis: (1, B, H) or (1, H).
    if is_lstm:
        c0 = leaf("c0")
        outputs, (h_n, c_n) = module(xs, (h0.unsqueeze(0), c0.unsqueeze(0)))
    else:
        outputs, h_n = module(xs, h0.unsqueeze(0))

    loss = (outputs * torch.from_numpy(arrays["R"])).sum()
    loss.backward()

    arrays["outputs"] = outputs.detach().numpy().copy()
    arrays["h_n"] = h_n.detach().squeeze(0).numpy().copy()
    if is_lstm:
        arrays["c_n"] = c_n.detach().squeeze(0).numpy().copy()
        # Per-step cell states: run the same module one step at a time.
        cells = []
        with torch.no_grad():
            h = h0.detach().unsqueeze(0)
            c = c0.detach().unsqueeze(0)
            for t in range(T):
                out_t, (h, c) = module(xs.detach()[t : t + 1], (h, c))
                np.testing.assert_allclose(
                    out_t[0].numpy(), arrays["outputs"][t], rtol=0, atol=1e-14
                )
                cells.append(c.squeeze(0).numpy().copy())
        arrays["cells"] = np.stack(cells)
        np.testing.assert_allclose(arrays["cells"][-1], arrays["c_n"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(arrays["outputs"][-1], arrays["h_n"], rtol=0, atol=1e-14)

    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        arrays["grad_" + name] = getattr(module, name + "_l0").grad.numpy().copy()
    arrays["grad_xs"] = xs.grad.numpy().copy()
    arrays["grad_h0"] = h0.grad.numpy().copy()
    if is_lstm:
        arrays["grad_c0"] = c0.grad.numpy().copy()
    return arrays


def _check_rnn_with_numpy(path):
    """Recompute the RNN outputs from the saved weights with plain numpy."""
    with np.load(path, allow_pickle=False) as f:
        for prefix in ("batched", "unbatched"):
            w_ih = f[f"{prefix}_weight_ih"]
            w_hh = f[f"{prefix}_weight_hh"]
            b_ih = f[f"{prefix}_bias_ih"]
            b_hh = f[f"{prefix}_bias_hh"]
            h = f[f"{prefix}_h0"]
            outs = []
            for x_t in f[f"{prefix}_xs"]:
                h = np.tanh(x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
                outs.append(h)
            np.testing.assert_allclose(np.stack(outs), f[f"{prefix}_outputs"], rtol=0, atol=1e-12)
            np.testing.assert_allclose(h, f[f"{prefix}_h_n"], rtol=0, atol=1e-12)


def main() -> None:
    import torch

    torch.manual_seed(0)  # nothing random is drawn from torch; set for good measure
    torch.use_deterministic_algorithms(True)

    for kind, (_, seed) in KINDS.items():
        rng = np.random.default_rng(seed)
        payload = {}
        for prefix, batched in (("batched", True), ("unbatched", False)):
            for key, value in _case(torch, kind, batched, rng).items():
                payload[f"{prefix}_{key}"] = np.ascontiguousarray(value, dtype=np.float64)
        path = OUT_DIR / f"torch_golden_{kind}.npz"
        np.savez(path, **payload)

        with np.load(path, allow_pickle=False) as f:
            assert sorted(f.files) == sorted(payload)
            for key in f.files:
                assert f[key].dtype == np.float64, key
                np.testing.assert_array_equal(f[key], payload[key])
        print(f"wrote {path} ({path.stat().st_size} bytes, {len(payload)} arrays)")

    _check_rnn_with_numpy(OUT_DIR / "torch_golden_rnn.npz")
    print("numpy recomputation of RNN outputs matches torch to 1e-12")


if __name__ == "__main__":
    main()
