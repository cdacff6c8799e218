"""The one exception type for errors a user can cause (bad input, foreign store, ...).

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its
traceback.
"""


class InrforgeError(Exception):
    """A problem with the user's input, files or settings, explained in one line."""
