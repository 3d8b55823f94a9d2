"""``python -m tinygraph_rnn demo``: a placeholder until the RNN demo lands."""

import numpy as np

import tinygraph as tg


def main() -> None:
    g = tg.Graph("demo")
    x = g.input("x", shape=(None, 3))
    W = g.param("W", np.full((3, 4), 0.5))
    y = tg.softmax(tg.tanh(x @ W), axis=-1)
    print(g.run(y, feeds={"x": np.ones((2, 3))}))


if __name__ == "__main__":
    main()
