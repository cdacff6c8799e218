"""The console entry point ``inrforge`` (and ``python -m inrforge``).

Importing the CLI imports torch, which takes seconds; a Ctrl-C meanwhile is one line on stderr and
status 130, as it is once the command runs (:func:`inrforge.script.report_errors`), not a traceback
from inside torch.  ``import inrforge`` itself imports nothing heavy (its names load on first use).
"""

from __future__ import annotations

import sys


def quiet_interrupts(prog: str) -> None:
    """For a script, called before its heavy imports: a Ctrl-C that nothing catches (while torch
    loads, say) prints ``prog: interrupted`` instead of a traceback, and the process still ends as
    one stopped by SIGINT (status 130 in a shell).  Other exceptions are reported as before; a
    script's own run (:func:`inrforge.script.run_script`) handles Ctrl-C itself."""
    previous = getattr(sys.excepthook, "previous", sys.excepthook)  # set once, however often called

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            print(f"{prog}: interrupted", file=sys.stderr)
        else:
            previous(kind, value, tb)

    hook.previous = previous
    sys.excepthook = hook


def main(argv=None) -> int:
    try:
        from .cli import main as run

        return run(argv)  # the command's own Ctrl-C: inrforge.script.report_errors
    except KeyboardInterrupt:  # while the CLI was imported, or its arguments parsed
        print("inrforge: interrupted", file=sys.stderr)
        return 130
