"""Running graphs: feeds, the reference interpreter, compiled plans and their buffers.

- :mod:`.feeds`: checking the arrays fed for inputs.
- :mod:`.interpreter`: :class:`Interpreter`, one node at a time (the reference).
- :mod:`.plan`, :mod:`.codegen`: :class:`Plan`, a schedule compiled to straight-line code.
- :mod:`.buffers`, :mod:`.stacks`: output buffers kept between calls; stacks written in place.
- :mod:`.compiled`: :class:`CompiledGraph`, what ``g.compile`` returns.

This layer runs a graph as given; :mod:`tinygraph.compiler` decides which
rewrites (:mod:`tinygraph.passes`) run first.
"""

from .compiled import CompiledGraph, input_names
from .feeds import check_feed, missing_feed, resolve_feeds
from .interpreter import Interpreter
from .plan import CODEGEN_MAX_STEPS, Plan, Step

__all__ = ["CompiledGraph", "Interpreter", "Plan", "Step", "CODEGEN_MAX_STEPS", "check_feed",
           "input_names", "missing_feed", "resolve_feeds"]
