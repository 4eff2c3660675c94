"""The glibc allocator tuning used while training on the CPU."""
import importlib
import platform
import sys

import pytest

import scvi._allocator as allocator


def test_tuning_is_done_once_and_reports_what_it_did():
    first = allocator.tune_cpu_allocator()
    assert isinstance(first, bool)
    assert allocator.tune_cpu_allocator() is first  # idempotent: cached for the process
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first  # mallopt exists on glibc and accepts both settings


def test_environment_variable_opts_out(monkeypatch):
    monkeypatch.setenv("SCVI_KEEP_MALLOC_DEFAULTS", "1")
    fresh = importlib.reload(allocator)
    try:
        assert fresh.tune_cpu_allocator() is False
    finally:
        monkeypatch.delenv("SCVI_KEEP_MALLOC_DEFAULTS")
        importlib.reload(allocator)


@pytest.mark.parametrize("system", ["darwin", "win32"])
def test_other_platforms_are_left_alone(monkeypatch, system):
    fresh = importlib.reload(allocator)
    monkeypatch.setattr(fresh.sys, "platform", system)
    try:
        assert fresh.tune_cpu_allocator() is False
    finally:
        monkeypatch.undo()
        importlib.reload(allocator)
