"""The data package's exceptions and warnings (kept apart so every module can raise them without cycles)."""

from __future__ import annotations

from litezoo.errors import InputError


class DatasetError(InputError):
    """The dataset cannot be used as given: path not found, unknown name, bad layout, no local copy offline.

    Raised before any training starts; the CLI maps it to exit code 2.
    """


class BadImageWarning(UserWarning):
    """Some image files could not be decoded and were left out (listed once, in one line)."""
