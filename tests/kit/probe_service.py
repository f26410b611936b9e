"""A throwaway nameko service built on the kit exactly like the real ones, for the consumer tests.

It consumes `commission.accrued` from the (fake) source service `kitsrc` and, per event, records one
application and emits one `commission.settled` follow-up, both in the handler's transaction. The test steers
it through the `plans` collection (written outside any transaction, so it survives a failed attempt):
- `{_id: <order_id>, fail: N}`: the first N runs raise (N = -1: every run raises); `runs` counts the runs;
- `{_id: "hang:<event_id>"}`: after that event's transaction committed, hang before the ack (a test then
  SIGKILLs the process: the crash between commit and ack).
WorkerlessProbe runs the same handler without a nameko worker: the tests run against both.
"""
import time

from pymongo import ReturnDocument

from kit.events import on_event
from kit.mongo import BaseStore, MongoStore
from kit.service import ServiceBase
from kit.validation import utcnow

SOURCE, EVENT_TYPE, FOLLOW_UP = "kitsrc", "commission.accrued", "commission.settled"


class ProbeStore(BaseStore):
    COLLECTIONS = ("plans", "applied")

    def count_run(self, order_id):
        return self.plans.find_one_and_update({"_id": order_id}, {"$inc": {"runs": 1}}, upsert=True,
                                              return_document=ReturnDocument.AFTER)

    def apply_once(self, key, fn):
        result = super().apply_once(key, fn)
        if self.plans.find_one({"_id": "hang:" + key.split(":", 1)[1]}):
            time.sleep(600)  # committed, not acked yet: wait here for the test's SIGKILL
        return result


class ProbeService(ServiceBase):
    # Named after the owner of its follow-up event (a service emits only its own events); it runs on the
    # kit tests' private broker and database, never beside the real commission service.
    name = "commission"
    store = MongoStore(ProbeStore)

    def accrue(self, event, session):
        data = event["data"]
        plan = self.store.count_run(data["order_id"])
        fail = plan.get("fail", 0)
        if fail < 0 or plan["runs"] <= fail:
            raise RuntimeError(f"planned failure, run {plan['runs']} of {data['order_id']}")
        self.store.applied.insert_one({"event_id": event["id"], "order_id": data["order_id"], "at": utcnow(),
                                       "by": type(self).__name__}, session=session)
        self.store.emit(session, FOLLOW_UP, data, subject=data["order_id"])

    @on_event(SOURCE, EVENT_TYPE)
    def on_accrued(self, event, session):
        self.accrue(event, session)


class WorkerlessProbe(ProbeService):
    """The same handler, run without a nameko worker (kit.workerless), as events applied together are."""

    @on_event(SOURCE, EVENT_TYPE, worker=False)
    def on_accrued(self, event, session):
        self.accrue(event, session)
