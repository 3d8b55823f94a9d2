"""tinygraph: a small, exact and fast computational-graph framework on numpy.

Gates are nodes of an explicit dataflow graph held in a ``networkx.DiGraph``;
a scheduler evaluates only what the requested outputs need, in topological
order; gradients are graph nodes too; any graph renders to SVG.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph("affine")
>>> x = g.input("x", shape=(None, 3))
>>> W = g.param("W", np.ones((3, 4)))
>>> y = tg.softmax(tg.tanh(x @ W), axis=-1)
>>> g.run(y, feeds={"x": np.ones((2, 3))}).shape
(2, 4)
"""

from . import optim, passes
from .autodiff import grad
from .core import ops
from .core.builders import (
    add,
    concat,
    cross_entropy,
    div,
    exp,
    getitem,
    log,
    log_softmax,
    matmul,
    mean,
    mul,
    neg,
    one_hot,
    pow,  # noqa: A004 - numpy's name
    relu,
    reshape,
    sigmoid,
    softmax,
    stack,
    sub,
    sum,  # noqa: A004 - numpy's name
    take,
    tanh,
    transpose,
)
from .core.builders_numpy import (
    abs,  # noqa: A004 - numpy's name
    argmax,
    argmin,
    broadcast_to,
    clip,
    cos,
    cumsum,
    equal,
    erf,
    expand_dims,
    gather,
    gelu,
    greater,
    greater_equal,
    leaky_relu,
    less,
    less_equal,
    logical_and,
    logical_not,
    logical_or,
    logsigmoid,
    logsumexp,
    max,  # noqa: A004 - numpy's name
    maximum,
    min,  # noqa: A004 - numpy's name
    minimum,
    not_equal,
    pad,
    rsqrt,
    sign,
    silu,
    sin,
    softplus,
    split,
    sqrt,
    squeeze,
    std,
    stop_gradient,
    var,
    where,
)
from .core.node import Node
from .core.ops import OPS, Op
from .core.scan import scan
from .errors import (
    CycleError,
    DtypeError,
    EvaluationError,
    FeedError,
    FormatError,
    GraphError,
    NodeNameError,
    RenderError,
    ShapeError,
)
from .exec.threads import blas_threads, get_blas_threads, set_blas_threads
from .graph import Graph, load
from .io import save

__version__ = "0.1.0"

__all__ = [
    "Graph", "Node", "Op", "OPS", "load", "save",
    "GraphError", "CycleError", "ShapeError", "FeedError", "DtypeError", "NodeNameError",
    "EvaluationError", "FormatError", "RenderError",
    "add", "sub", "mul", "div", "neg", "pow", "matmul",
    "tanh", "sigmoid", "relu", "exp", "log", "softmax", "log_softmax",
    "sum", "mean", "transpose", "reshape", "concat", "stack", "take", "one_hot",
    "cross_entropy", "getitem",
    "maximum", "minimum", "where", "abs", "sign", "sqrt", "rsqrt", "clip", "max", "min",
    "argmax", "argmin", "logsumexp", "var", "std", "gather", "split", "pad", "broadcast_to",
    "expand_dims", "squeeze", "cumsum", "sin", "cos", "erf", "softplus", "logsigmoid",
    "leaky_relu", "silu", "gelu", "equal", "not_equal", "less", "less_equal", "greater",
    "greater_equal", "logical_and", "logical_or", "logical_not", "stop_gradient",
    "grad", "scan", "optim", "passes", "ops",
    "blas_threads", "set_blas_threads", "get_blas_threads",
]
