"""Exceptions that carry a message meant for the user.

Library code raises these (or plain ``ValueError`` / ``FileNotFoundError``); only the CLI turns them into a
one-line message and an exit code: bad input -> 2, a failure during work -> 1.
"""


class LitezooError(Exception):
    """Base class of litezoo's own errors."""


class InputError(LitezooError, ValueError):
    """Bad input detected before work starts (unknown name, bad value, missing path): CLI exit code 2."""


class WorkError(LitezooError, RuntimeError):
    """A failure while working (diverged loss, corrupt checkpoint mid-run): CLI exit code 1."""
