"""Generate ``optim_goldens.npz``: torch.optim's params after each of 5 steps.

PyTorch is not a dependency of tinygraph; run from the repository root in an
environment with torch::

    python tests/data/make_optim_goldens.py

Keys: ``p0``/``p1`` (initial params), ``g{step}_{k}`` (the gradient of param
k given at step), and ``{config}/{step}_{k}`` (param k after that step) for
each optimizer configuration in ``CONFIGS``. Importing does nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = 5
# name -> (torch.optim class name, keyword arguments); tinygraph takes the same keywords.
CONFIGS = {
    "rmsprop": ("RMSprop", {}),
    "rmsprop_full": ("RMSprop", {"lr": 0.02, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1,
                                 "momentum": 0.5, "centered": True}),
    "adamw": ("AdamW", {"lr": 0.01}),
    "adamw_decay": ("AdamW", {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.3}),
    "adagrad_eps0": ("Adagrad", {"lr": 0.1, "eps": 0.0}),
}


def main() -> None:
    import torch  # noqa: PLC0415 - only the generator needs torch

    rng = np.random.default_rng(14)
    out = {"p0": rng.normal(size=(3, 4)), "p1": rng.normal(size=(5,))}
    for step in range(STEPS):
        for k in range(2):
            out[f"g{step}_{k}"] = rng.normal(size=out[f"p{k}"].shape)
    for name, (cls, kwargs) in CONFIGS.items():
        params = [torch.tensor(out[f"p{k}"], requires_grad=True) for k in range(2)]
        opt = getattr(torch.optim, cls)(params, **kwargs)
        for step in range(STEPS):
            for k, p in enumerate(params):
                p.grad = torch.tensor(out[f"g{step}_{k}"])
            opt.step()
            for k, p in enumerate(params):
                out[f"{name}/{step}_{k}"] = p.detach().numpy().copy()
    np.savez_compressed(HERE / "optim_goldens.npz", **out)


if __name__ == "__main__":
    main()
