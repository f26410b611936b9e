"""kit.service.FreezeStartupObjects: a service's start leaves the objects it made out of the garbage collector's
later passes (the full collections under load walked them all: a pause of ~55 ms in the gateway, its p99)."""
import gc
import weakref

from kit.service import FreezeStartupObjects, ServiceBase


class Node:
    pass


def is_walked(obj):
    """Whether the collector's passes see `obj` (gc.get_objects lists the generations, not the frozen objects)."""
    return any(candidate is obj for candidate in gc.get_objects())


def test_a_service_start_collects_its_garbage_then_freezes_what_it_made():
    # given every service's base, and objects a start made: one kept, and a cycle already garbage
    assert isinstance(ServiceBase.startup_objects, FreezeStartupObjects)
    kept = Node()
    cycle = [Node(), Node()]
    cycle[0].other, cycle[1].other = cycle[1], cycle[0]
    garbage = weakref.ref(cycle[0])
    del cycle
    assert is_walked(kept) and garbage() is not None
    try:
        # when the service starts
        FreezeStartupObjects().start()
        # then the garbage is gone, and what it kept is no longer walked by the collector's passes
        assert garbage() is None
        assert not is_walked(kept) and gc.get_freeze_count() > 0
        # while what it makes afterwards is
        later = Node()
        assert is_walked(later)
    finally:
        gc.unfreeze()
