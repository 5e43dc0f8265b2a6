"""litezoo.heap: large freed blocks are reused instead of being mapped (and zero-filled by the kernel) again."""

from __future__ import annotations

import platform
import resource

import pytest
import torch

from litezoo.heap import heap_kept

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def _faults_of_second_allocation(nbytes: int) -> int:
    """Minor page faults while writing a fresh block of nbytes right after a larger block was freed.

    (Larger, as a training step's buffers vary in size: an aligned request for exactly the freed size may not fit
    the freed chunk.)
    """
    block = torch.empty(nbytes * 4 // 3, dtype=torch.uint8)
    block.fill_(1)  # touch every page
    del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(nbytes, dtype=torch.uint8)
    block.fill_(2)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_heap_kept_reuses_pages() -> None:
    nbytes = 48 * 2**20  # above glibc's largest mmap threshold (32 MiB): served by mmap by default
    pages = nbytes // resource.getpagesize()
    default = _faults_of_second_allocation(nbytes)
    with heap_kept() as active:
        assert active
        _faults_of_second_allocation(nbytes)  # the first round grows the heap
        kept = _faults_of_second_allocation(nbytes)
    after = _faults_of_second_allocation(nbytes)  # defaults restored on exit
    assert default > pages // 2, f"expected a fresh mapping by default, saw {default} faults for {pages} pages"
    assert kept < pages // 20, f"heap_kept: {kept} faults for {pages} pages"
    assert after > pages // 2, f"defaults not restored: {after} faults for {pages} pages"


def test_heap_kept_disabled_is_inactive() -> None:
    with heap_kept(False) as active:
        assert not active
