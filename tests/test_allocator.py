"""The malloc tuning of tinygraph.exec.allocator, checked through glibc's own accounting.

Each case runs in a fresh interpreter (the tuning is once per process): a
1 MiB array is allocated and freed after the first plan is built, and
``mallinfo2`` tells whether its memory stayed in the heap, ready for the next
array (tuned), or went back to the kernel (glibc's default for a first
block above 128 KiB, and what TINYGRAPH_MALLOC_TUNING=0 keeps).
"""

import os
import platform
import subprocess
import sys

import pytest

# glibc's heap accounting, read from a script run in a fresh interpreter.
MALLINFO = """
import ctypes

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
"""

SCRIPT = MALLINFO + """
import numpy as np, tinygraph as tg
g = tg.Graph()
x = g.input("x", shape=(2,))
g.run(tg.tanh(x), feeds={"x": np.zeros(2)})   # builds a plan: tunes malloc unless told not to
before = libc.mallinfo2().fordblks
a = np.ones(1 << 17)                             # 1 MiB
del a
print(libc.mallinfo2().fordblks - before)
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="malloc tuning applies to glibc only")


def _freed_bytes_kept(env_value):
    env = dict(os.environ)
    env.pop("TINYGRAPH_MALLOC_TUNING", None)
    if env_value is not None:
        env["TINYGRAPH_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return int(out.stdout.split()[-1])


@glibc
def test_freed_array_memory_stays_ready_for_reuse():
    assert _freed_bytes_kept(None) >= 1 << 19  # part may have come from free space


@glibc
def test_tuning_can_be_turned_off():
    assert _freed_bytes_kept("0") < 1 << 19


def test_tune_allocator_reports_the_switch(monkeypatch):
    from tinygraph.exec import allocator

    monkeypatch.setattr(allocator, "_state", {})
    monkeypatch.setenv("TINYGRAPH_MALLOC_TUNING", "off")
    assert allocator.tune_allocator() is False


KEEP_SCRIPT = MALLINFO + """
import sys, numpy as np
from tinygraph.exec import allocator
allocator.tune_allocator()
if sys.argv[1] == "keep":
    assert allocator.keep_freed(400 << 20)
arrays = [np.ones(1 << 20) for _ in range(20)]   # 20 x 8 MiB from the heap
del arrays
print(libc.mallinfo2().fordblks)
"""


def _freed_after_large_plan(mode):
    env = {k: v for k, v in os.environ.items() if k != "TINYGRAPH_MALLOC_TUNING"}
    out = subprocess.run([sys.executable, "-c", KEEP_SCRIPT, mode], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.split()[-1])


@glibc
def test_a_plan_with_large_temporaries_keeps_them_mapped():
    # 160 MiB freed at the top of the heap: with the 64 MiB threshold glibc gives it back
    # (the next call faults every page in again); after keep_freed it stays.
    assert _freed_after_large_plan("keep") >= 100 << 20
    assert _freed_after_large_plan("default") < 100 << 20


def test_a_plan_asks_to_keep_what_its_steps_allocate(monkeypatch):
    import numpy as np

    import tinygraph as tg
    from tinygraph.exec import plan as plan_module

    asked = []
    monkeypatch.setattr(plan_module, "keep_freed", asked.append)
    g = tg.Graph()
    x = g.input("x", shape=(None, 1000))
    fn = g.compile(tg.sum(tg.tanh(x) * 2.0), inputs=["x"])
    fn(np.zeros((100, 1000)))
    assert asked and asked[0] >= 2 * 100 * 1000 * 8  # tanh's and the product's 800 kB each
