"""The project's single error type for user mistakes and bad input."""

from __future__ import annotations


class SarJaxError(Exception):
    """A problem the user can fix: bad config, bad data, bad checkpoint, bad path.

    Command-line entry points turn it into a one-line message and exit status 2.
    """
