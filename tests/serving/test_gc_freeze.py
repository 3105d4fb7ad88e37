"""freeze_startup_objects: what a service holds after start-up is skipped by later garbage collections."""

from __future__ import annotations

import gc
import weakref

import pytest

from serving.gc_freeze import freeze_startup_objects


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


@pytest.fixture
def unfrozen_afterwards():
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def test_objects_kept_from_startup_are_frozen_and_startup_garbage_is_collected(unfrozen_afterwards):
    kept = [Node() for _ in range(1000)]  # what a service keeps for its lifetime (models, routes, ...)
    a, b = Node(), Node()
    a.peer, b.peer = b, a  # garbage in a cycle, left by start-up: freed first, never frozen
    in_cycle = weakref.ref(a)
    del a, b

    frozen = freeze_startup_objects()

    assert frozen == gc.get_freeze_count() >= len(kept)
    assert in_cycle() is None  # collected, not frozen
    tracked = {id(o) for o in gc.get_objects()}  # the objects later collections traverse (ids of live objects)
    assert not any(id(node) in tracked for node in kept)
    later = Node()  # created after start-up: collected as usual
    assert id(later) in {id(o) for o in gc.get_objects()}
