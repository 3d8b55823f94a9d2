"""The graph as data: shapes, op records, nodes, graphs, traversal, validation, builders.

Everything else in tinygraph (passes, execution, autodiff, rendering, files)
reads graphs through this layer; it depends on :mod:`tinygraph.errors` only.

- :mod:`.shapes`, :mod:`.shape_rules`: shape arithmetic with unknown sizes, one rule per op.
- :mod:`.op`: the :class:`Op` record (forward, shape rule, vjp, batch rule, traits), the registry.
- :mod:`.primitives`, :mod:`.recurrence`, :mod:`.reverse_recurrence`: the op records;
  :mod:`.ops` registers them all.
- :mod:`.arrays`: user values to checked arrays; aligned param storage.
- :mod:`.node`, :mod:`.graph`: the data; :mod:`.builders`: ``tg.tanh`` and friends.
- :mod:`.traverse`: fetch structures, ancestors, the run order; :mod:`.validate`: the lint.
- :mod:`.gcpause`: building big graphs with the cyclic GC paused.
"""

from . import ops  # noqa: F401 - fills the registry before any node is built
from .graph import SCOPE_SEP, Graph
from .node import Node, as_node, graph_of

__all__ = ["Graph", "Node", "SCOPE_SEP", "as_node", "graph_of"]
