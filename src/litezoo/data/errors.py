"""The data package's exceptions and warnings (kept apart so every module can raise them without cycles)."""

from __future__ import annotations

from litezoo.errors import InputError


class DatasetError(InputError):
    """The dataset cannot be used as given: path not found, unknown name, bad layout, no local copy offline.

    Raised before any training starts; the CLI maps it to exit code 2.
    """


class DataWarning(UserWarning):
    """Something about the data the user should know, in one line (the CLI prints it as ``warning: ...``)."""


class BadImageWarning(DataWarning):
    """Some image files could not be decoded and were left out (listed once, in one line)."""


class SmallImageWarning(DataWarning):
    """Some images are far smaller than the training size (shorter side < image_size / 4): they become
    blurry or flat tiles (listed once, in one line)."""


class PixelRangeWarning(DataWarning):
    """The value range of some 32-bit integer (I) or float (F) images had to be guessed (listed once)."""
