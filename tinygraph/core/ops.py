"""The registry: every op record, registered in one place.

:data:`OPS` maps an op name to its :class:`~tinygraph.core.op.Op` record.
The primitives (:mod:`tinygraph.core.primitives`, and numpy's elementwise ops,
reductions and indexing in :mod:`~tinygraph.core.prim_math`,
:mod:`~tinygraph.core.prim_reduce` and :mod:`~tinygraph.core.prim_shape`) and the fused ops the
optimizer emits (:mod:`tinygraph.core.prim_affine`, :mod:`tinygraph.core.recurrence`,
:mod:`tinygraph.core.reverse_recurrence`) are registered here, all the same
way, each with its batch rule from :mod:`tinygraph.core.batch_rules`;
``register`` adds a user's own op.

>>> import numpy as np
>>> OPS["tanh"].forward(np.zeros(2))
array([0., 0.])
>>> sorted(name for name, op in OPS.items() if op.identity_when_shapes_agree)
['broadcast_to', 'reshape_like', 'sum_to']
"""

from __future__ import annotations

import dataclasses

from .batch_rules import BATCH_RULES
from .op import LEAF_OPS, OPS, Op, register
from .prim_affine import AFFINE
from .prim_loss import LOSS
from .prim_math import MATH
from .prim_reduce import REDUCE
from .prim_shape import SHAPE
from .primitives import PRIMITIVES
from .recurrence import RECURRENCE
from .reverse_recurrence import REVERSE_RECURRENCE
from .scan_rules import SCAN, UNPACK
from .shape_rules import DtypeMismatch

__all__ = ["Op", "OPS", "LEAF_OPS", "register", "DtypeMismatch"]

for _record in [*PRIMITIVES, *LOSS, *MATH, *REDUCE, *SHAPE, AFFINE, RECURRENCE,
                REVERSE_RECURRENCE, SCAN, UNPACK]:
    # Batch rules live in one table (as JAX's batchers do) and join each record here.
    register(dataclasses.replace(_record, batch=_record.batch or BATCH_RULES.get(_record.name)))
