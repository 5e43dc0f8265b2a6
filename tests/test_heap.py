"""litezoo.heap: large freed blocks are reused instead of being mapped (and zero-filled by the kernel) again."""

from __future__ import annotations

import multiprocessing
import platform
import resource

import pytest
import torch

from litezoo.heap import heap_kept

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def _in_fresh_process(check) -> None:
    """Run ``check`` (a module-level function) in a new interpreter and re-raise its assertion here.

    Page faults depend on the whole process's allocator state, which earlier tests change behind our back (a
    runtime library loaded in-process, a heap grown and fragmented by hundreds of tests): measured in the pytest
    process these checks passed alone and failed after the full suite. A spawned process starts from glibc's
    defaults, as a training process does.
    """
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        error = pool.apply(_run_check, (check,))
    if error:
        raise AssertionError(error)


def _run_check(check) -> str | None:
    try:
        check()
    except AssertionError as exc:
        return str(exc)
    return None


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


def _check_heap_kept_reuses_pages() -> None:
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


def _check_heap_kept_disabled_changes_nothing() -> None:
    nbytes = 48 * 2**20
    pages = nbytes // resource.getpagesize()
    with heap_kept(False) as active:
        assert not active
        _faults_of_second_allocation(nbytes)
        faults = _faults_of_second_allocation(nbytes)
    assert faults > pages // 2, f"heap_kept(False) kept the heap: {faults} faults for {pages} pages"


def _check_nested_contexts_restore_only_when_the_last_exits() -> None:
    nbytes = 48 * 2**20
    pages = nbytes // resource.getpagesize()
    with heap_kept() as outer:
        with heap_kept() as inner:
            assert outer and inner
        _faults_of_second_allocation(nbytes)
        still_kept = _faults_of_second_allocation(nbytes)  # the inner exit must not undo the outer context
    after = _faults_of_second_allocation(nbytes)
    assert still_kept < pages // 20, f"inner exit restored the defaults: {still_kept} faults for {pages} pages"
    assert after > pages // 2, f"defaults not restored after the outer exit: {after} faults for {pages} pages"


@pytest.mark.parametrize(
    "environ, mmap_max, trim",
    [
        ({}, 65536, 128 * 1024),  # glibc's defaults
        ({"MALLOC_MMAP_MAX_": "0"}, 0, 128 * 1024),
        ({"MALLOC_TRIM_THRESHOLD_": "0x100000"}, 65536, 1 << 20),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=7:glibc.malloc.trim_threshold=4096"}, 7, 4096),
        ({"MALLOC_MMAP_MAX_": "3", "GLIBC_TUNABLES": "glibc.malloc.mmap_max=5"}, 5, 128 * 1024),  # tunables win
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=lots:glibc.cpu.x86_shstk=on"}, 65536, 128 * 1024),  # ignored
    ],
)
def test_startup_settings_read_from_the_environment(environ, mmap_max, trim) -> None:
    from litezoo.heap import _M_MMAP_MAX, _M_TRIM_THRESHOLD, startup_settings

    assert startup_settings(environ) == {_M_MMAP_MAX: mmap_max, _M_TRIM_THRESHOLD: trim}


_CHILD = """
import resource, sys, torch
from litezoo.heap import heap_kept
sys.path.insert(0, {tests!r})
from test_heap import _faults_of_second_allocation
n = 48 * 2**20
with heap_kept():
    _faults_of_second_allocation(n)
_faults_of_second_allocation(n)  # the exit trimmed the heap: grow it again
print(_faults_of_second_allocation(n), n // resource.getpagesize())
"""


@glibc_only
def test_exit_restores_the_start_up_setting_not_glibcs_default(tmp_path) -> None:
    """A process started with mmap off (MALLOC_MMAP_MAX_=0) must still have it off after heap_kept exits."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1), "OMP_NUM_THREADS": "1"}
    code = _CHILD.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    faults, pages = map(int, out.split())
    assert faults < pages // 20, f"glibc defaults came back instead of the start-up setting: {faults} faults"


@glibc_only
def test_heap_kept_reuses_pages() -> None:
    _in_fresh_process(_check_heap_kept_reuses_pages)


@glibc_only
def test_heap_kept_disabled_changes_nothing() -> None:
    _in_fresh_process(_check_heap_kept_disabled_changes_nothing)


@glibc_only
def test_nested_contexts_restore_only_when_the_last_exits() -> None:
    _in_fresh_process(_check_nested_contexts_restore_only_when_the_last_exits)
