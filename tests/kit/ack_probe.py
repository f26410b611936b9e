"""A throwaway service on the kit for the acks tests (tests/kit/test_kit_acks.py): it consumes `probe` events of
the (fake) source `kitacks`. A `slow` one stays in its handler until the process dies; the others wait until
`fast` of them are in their handlers, then all finish in the same tick of the event loop."""
import eventlet
from eventlet.event import Event

from kit.amqp import event_handler
from kit.mongo import MongoStore
from kit.service import ServiceBase
from tests.kit.probe_service import ProbeStore

SOURCE, EVENT_TYPE = "kitacks", "probe"
QUEUE = f"evt-{SOURCE}-{EVENT_TYPE}--kitackprobe.handle"

_fast, _release = [], Event()


class AckProbe(ServiceBase):
    name = "kitackprobe"
    store = MongoStore(ProbeStore)  # for /health, as every service has one

    @event_handler(SOURCE, EVENT_TYPE)
    def handle(self, payload):
        if payload["slow"]:
            eventlet.sleep(3600)  # still being handled when the test kills the process
        _fast.append(payload["n"])
        if len(_fast) == payload["fast"]:
            _release.send()
        _release.wait()
