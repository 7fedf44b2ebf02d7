"""The client's pause of the garbage collector around the making of a loaded history."""

from __future__ import annotations

import gc

import pytest

from agentstore.client.bulk import collector_paused


def test_the_collector_is_paused_within_and_running_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_within_leaves_the_collector_running() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("while making events")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
