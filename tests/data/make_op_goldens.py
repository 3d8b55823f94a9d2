"""Generate ``op_goldens.npz``: PyTorch's outputs and gradients for ``tests/op_cases.py``.

PyTorch is not a dependency of tinygraph; run this from the repository root
in an environment that has torch (CPU) and tinygraph's test dependencies::

    python tests/data/make_op_goldens.py

For case ``c`` the file holds ``c/x0``, ``c/x1``, … (the inputs, float32 or
int64), ``c/out`` (the output as float64) and, for differentiable cases,
``c/w`` (the weights of the loss ``sum(out * w)``) and ``c/g0``, … (its
gradient with respect to each float input). Importing this module does
nothing (torch is imported inside ``main``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    import torch  # noqa: PLC0415 - only the generator needs torch

    sys.path.insert(0, str(HERE.parent))
    from op_cases import CASES, inputs  # noqa: PLC0415

    arrays: dict[str, np.ndarray] = {}
    for name, case in CASES.items():
        xs = inputs(name, case)
        ts = [torch.tensor(x, requires_grad=case.grad and x.dtype.kind == "f") for x in xs]
        out = case.torch_fn(torch, *ts)
        for k, x in enumerate(xs):
            arrays[f"{name}/x{k}"] = x
        arrays[f"{name}/out"] = out.detach().numpy().astype(np.float64)
        if case.grad:
            rng = np.random.default_rng(len(name))
            w = rng.uniform(-1, 1, size=tuple(out.shape)).astype(np.float32)
            (out * torch.tensor(w)).sum().backward()
            arrays[f"{name}/w"] = w
            for k, t in enumerate(ts):
                if t.requires_grad:
                    grad = t.grad if t.grad is not None else torch.zeros_like(t)
                    arrays[f"{name}/g{k}"] = grad.numpy()
    np.savez_compressed(HERE / "op_goldens.npz", **arrays)
    print(f"{len(CASES)} cases, {(HERE / 'op_goldens.npz').stat().st_size} bytes")


if __name__ == "__main__":
    main()
