"""What a python tool call's own process runs: the model's code, read from stdin, in a clean
``__main__`` — as ``python -c`` would, with site's ``exit``/``quit``/``help`` and a soft time limit
that raises inside the code (so its traceback says where it was stuck).

Standard library only: :mod:`swarm.tools.sandbox` prepends this source to
:mod:`swarm.tools.sandbox_server`'s when it starts the server (swarm itself is not importable in
the sandbox).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

#: Exit code of a call that the boot code ended because its soft time limit fired.
SOFT_TIMEOUT_EXIT = 124


def boot(cfg: dict[str, Any]) -> int:
    """Run the code read from stdin in a clean ``__main__``, like ``python -c`` would."""
    import _signal
    import _sitebuiltins
    import builtins

    soft_timeout = float(cfg["soft_timeout"])
    sys.argv[:] = ["<code>"]
    # What site.py would have provided; models do call exit().
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    builtins.help = _sitebuiltins._Helper()
    cwd = os.getcwd()
    sys.path[:] = [cwd, *sys.path, *cfg["site_paths"]]

    class TimeLimitExceeded(BaseException):
        pass

    TimeLimitExceeded.__qualname__ = TimeLimitExceeded.__name__ = "TimeLimitExceeded"
    TimeLimitExceeded.__module__ = "builtins"

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"the code ran longer than the {soft_timeout:g} s time limit")

    src = sys.stdin.buffer.read().decode("utf-8", "replace")
    # A clean __main__ of the code's own (this program's globals live in the old one), so pickling,
    # tracebacks and ``if __name__ == "__main__"`` behave as under ``python -c``.
    module = type(sys)("__main__")
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    main = module.__dict__
    status: int = 0
    try:
        code = compile(src, "<code>", "exec")
        _signal.signal(_signal.SIGALRM, on_alarm)
        _signal.setitimer(_signal.ITIMER_REAL, soft_timeout)
        try:
            exec(code, main)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    except SystemExit as e:
        if e.code is None:
            status = 0
        elif isinstance(e.code, int):
            status = e.code
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException as e:
        if isinstance(e, MemoryError):
            main.clear()  # free the user's objects so the traceback can be printed
        # The workspace must not shadow the modules that print the traceback.
        sys.path[:] = [p for p in sys.path if p != cwd]
        import linecache
        import traceback

        linecache.cache["<code>"] = (len(src), None, src.splitlines(True), "<code>")
        entries, tb = [], e.__traceback__
        while tb is not None:
            entries.append(tb)
            tb = tb.tb_next
        if isinstance(e, TimeLimitExceeded) and len(entries) > 2:
            entries[-2].tb_next = None  # hide on_alarm
        traceback.print_exception(type(e), e, entries[1] if len(entries) > 1 else None)
        status = SOFT_TIMEOUT_EXIT if isinstance(e, TimeLimitExceeded) else 1
    # What interpreter shutdown would do: join threads, run atexit, flush.
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    return status
