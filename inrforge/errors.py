"""The one exception type for errors a user can cause (bad input, foreign store, ...).

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its
traceback.
"""

# What a fit interrupted at any point says: finished shards stay, and a re-run fits the others.
RESUMES = "re-run the same command to resume"


def first_line(e: BaseException) -> str:
    """The first line of ``e``'s message (its type's name when the message is empty): what a
    one-line error quotes of a library's exception."""
    return (str(e).splitlines() or [type(e).__name__])[0]


class InrforgeError(Exception):
    """A problem with the user's input, files or settings, explained in one line."""


class StoreReplacedError(InrforgeError):
    """The store a run writes into was replaced or removed by another run since it started.

    Trying again cannot help (the store is gone for this run), so the Dask driver does not retry a
    task that raised it."""
