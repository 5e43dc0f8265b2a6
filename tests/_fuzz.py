"""What the fuzz tests share (tests/test_fuzz_*.py): Hypothesis settings, a per-case time limit, outcome tallies.

Each fuzz module runs thousands of cases that must end in a clean result or the project's own error; a case
that raises anything else fails, and one that runs past its time limit is a hang and fails too.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings


def fuzz_settings(max_examples: int, **extra) -> settings:
    """Many examples, no per-example deadline (CI machines are shared: ``time_limit`` catches real hangs), no
    example database (runs do not depend on earlier ones), and the health checks that slow cases, large
    inputs and module-scoped scratch files would trip switched off."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
        **extra,
    )


class Hang(Exception):
    """A fuzz case ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "a fuzz case"):
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds`` (SIGALRM, POSIX)."""

    def alarm(signum, frame):
        raise Hang(f"{what} ran longer than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Outcomes(Counter):
    """How the cases of a fuzz module ended, per (family, outcome); the module's last test checks the tally."""

    def require(self, families: dict[str, tuple[str, ...]], min_total: int, min_each: int = 1) -> int:
        """Every family reached each of its outcomes at least ``min_each`` times, ``min_total`` cases in all.

        Skips unless every family ran in this session (e.g. one test picked with -k). Returns the total.
        """
        if not set(families) <= {family for family, _ in self}:
            pytest.skip("run with the fuzz tests above (e.g. the whole file) to check their outcomes")
        for family, kinds in families.items():
            for outcome in kinds:
                assert self[family, outcome] >= min_each, (family, outcome, dict(self))
        total = sum(self.values())
        assert total >= min_total, (total, dict(self))
        return total
