"""Generate tests/data/rnn_goldens.npz: multi-layer and bidirectional torch.nn.GRU/LSTM.

PyTorch is *not* a dependency of tinygraph; this script is only needed to
regenerate the committed file. Run it from the repository root in an
environment with torch (CPU build) and numpy::

    pip install torch==2.13.0
    python tests/data/make_rnn_goldens.py

Importing this module does nothing (torch is imported inside ``main``), so
pytest's ``--doctest-modules`` collection works without torch.

Cases (key prefix ``C``): ``gru_bi``, ``lstm_bi`` (``num_layers=2,
bidirectional=True``), ``gru_stack``, ``lstm_stack`` (``num_layers=2``), all
float64, ``batch_first=False``, ``D = 4``, ``H = 3``, ``T = 5``, ``B = 3``.
Keys, ``__`` between the case and the name:

``C__<param>``
    Every module parameter under PyTorch's name (``weight_ih_l0``,
    ``bias_hh_l1_reverse`` …), drawn from uniform(-0.5, 0.5).
``C__xs`` (T, B, D), ``C__h0`` (L*dirs, B, H), ``C__c0`` (LSTM)
    Inputs, standard normal / uniform(-0.5, 0.5).
``C__outputs`` (T, B, dirs*H), ``C__h_n``, ``C__c_n`` (LSTM)
    The module's results.
``C__R``, ``C__Rh``, ``C__Rc`` (LSTM)
    Fixed standard-normal arrays; the loss is
    ``L = sum(outputs * R) + sum(h_n * Rh) [+ sum(c_n * Rc)]``.
``C__grad__<param>``, ``C__grad__xs``, ``C__grad__h0``, ``C__grad__c0``
    dL/d(each).
``C__lengths`` (B,), ``C__packed_outputs``, ``C__packed_h_n``, ``C__packed_c_n``
    The same module on ``pack_padded_sequence(xs, lengths,
    enforce_sorted=False)`` with zero initial states; outputs padded back
    with zeros by ``pad_packed_sequence``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

T, B, D, H, LAYERS = 5, 3, 4, 3, 2
CASES = {"gru_bi": ("GRU", True), "lstm_bi": ("LSTM", True),
         "gru_stack": ("GRU", False), "lstm_stack": ("LSTM", False)}


def main() -> None:
    import torch

    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(20240614)
    out: dict[str, np.ndarray] = {}
    for case, (kind, bidirectional) in CASES.items():
        module = getattr(torch.nn, kind)(D, H, num_layers=LAYERS, bidirectional=bidirectional)
        params = dict(module.named_parameters())
        with torch.no_grad():
            for p in params.values():
                p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, size=tuple(p.shape))))
        dirs = 2 if bidirectional else 1
        xs = torch.from_numpy(rng.normal(size=(T, B, D))).requires_grad_()
        h0 = torch.from_numpy(rng.uniform(-0.5, 0.5, size=(LAYERS * dirs, B, H))).requires_grad_()
        lstm = kind == "LSTM"
        state = h0
        if lstm:
            c0 = torch.from_numpy(rng.uniform(-0.5, 0.5, size=(LAYERS * dirs, B, H)))
            c0.requires_grad_()
            state = (h0, c0)
        outputs, final = module(xs, state)
        h_n, c_n = final if lstm else (final, None)
        R = torch.from_numpy(rng.normal(size=tuple(outputs.shape)))
        Rh = torch.from_numpy(rng.normal(size=tuple(h_n.shape)))
        loss = (outputs * R).sum() + (h_n * Rh).sum()
        if lstm:
            Rc = torch.from_numpy(rng.normal(size=tuple(c_n.shape)))
            loss = loss + (c_n * Rc).sum()
            out[f"{case}__Rc"], out[f"{case}__c0"] = Rc.numpy(), c0.detach().numpy()
            out[f"{case}__c_n"] = c_n.detach().numpy()
        loss.backward()
        for name, p in params.items():
            out[f"{case}__{name}"] = p.detach().numpy().copy()
            out[f"{case}__grad__{name}"] = p.grad.numpy().copy()
        out.update({f"{case}__xs": xs.detach().numpy(), f"{case}__h0": h0.detach().numpy(),
                    f"{case}__outputs": outputs.detach().numpy(),
                    f"{case}__h_n": h_n.detach().numpy(), f"{case}__R": R.numpy(),
                    f"{case}__Rh": Rh.numpy(), f"{case}__grad__xs": xs.grad.numpy(),
                    f"{case}__grad__h0": h0.grad.numpy()})
        if lstm:
            out[f"{case}__grad__c0"] = c0.grad.numpy()
        lengths = np.array([T, 2, 4])
        packed = torch.nn.utils.rnn.pack_padded_sequence(xs.detach(), torch.from_numpy(lengths),
                                                         enforce_sorted=False)
        with torch.no_grad():
            p_out, p_final = module(packed)
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(p_out, total_length=T)
        out[f"{case}__lengths"] = lengths
        out[f"{case}__packed_outputs"] = padded.numpy()
        if lstm:
            out[f"{case}__packed_h_n"] = p_final[0].numpy()
            out[f"{case}__packed_c_n"] = p_final[1].numpy()
        else:
            out[f"{case}__packed_h_n"] = p_final.numpy()
    path = Path(__file__).with_name("rnn_goldens.npz")
    np.savez_compressed(path, **{k: np.ascontiguousarray(v) for k, v in out.items()})
    print(f"wrote {path} ({len(out)} arrays)")


if __name__ == "__main__":
    main()
