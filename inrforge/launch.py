"""The console entry point ``inrforge`` (and ``python -m inrforge``).

Importing the CLI imports torch, which takes seconds; a Ctrl-C meanwhile is one line on stderr and
status 130, as it is once the command runs (:func:`inrforge.script.report_errors`), not a traceback
from inside torch.  ``import inrforge`` itself imports nothing heavy (its names load on first use).
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    try:
        from .cli import main as run

        return run(argv)  # the command's own Ctrl-C: inrforge.script.report_errors
    except KeyboardInterrupt:  # while the CLI was imported, or its arguments parsed
        print("inrforge: interrupted", file=sys.stderr)
        return 130
