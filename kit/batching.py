"""Group commit: requests that arrive while others are being written wait for the next batch and are written
together, so a burst costs a few database (or broker) round trips per batch instead of a few per request.

Nothing waits for a batch to fill: a request that arrives while nothing else is in flight goes straight through
on its own (`alone()`, the path it takes without batching); one that arrives while others are in flight joins
the next batch, and under load the batches grow by themselves (natural batching, as a database's group commit of
its log). One greenthread per GroupCommit writes the batches, outside any worker, so a caller that gives up
never stalls the ones behind it.

`write_batch(requests)` returns one outcome per request, in order: the caller's answer, an exception to raise to
that caller, or ALONE: the caller handles its request by itself after all (e.g. a retry of a request already
being handled elsewhere, which may have to wait). An exception raised by write_batch reaches every caller of the
batch."""
import weakref

import eventlet
from eventlet.event import Event

from kit.metrics import BATCH_ALONE, BATCH_SIZE

ALONE = object()


class GroupCommit:
    def __init__(self, write_batch, max_batch=64, name=None):
        self.write_batch = write_batch
        self.name = name or write_batch.__name__  # the `batcher` label of its metrics
        self.max_batch = max_batch  # a bound on one batch's size, and on the callers one failure answers
        self._waiting = []  # [(request, Event)]
        self._writing = False
        self._alone = 0  # requests going through on their own right now
        self.batches = self.batched = 0  # how much was grouped (tests, the bench)

    def submit(self, request, alone):
        if not self._alone and not self._writing:
            BATCH_ALONE.labels(self.name).inc()
            self._alone += 1
            try:
                return alone()
            finally:
                self._alone -= 1
        done = Event()
        self._waiting.append((request, done))
        if not self._writing:
            self._writing = True
            eventlet.spawn_n(self._write_batches)
        outcome = done.wait()
        if outcome is ALONE:
            return alone()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _write_batches(self):
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                self.batches, self.batched = self.batches + 1, self.batched + len(batch)
                BATCH_SIZE.labels(self.name).observe(len(batch))
                try:
                    outcomes = self.write_batch([request for request, _ in batch])
                except Exception as exc:  # the database, the broker or a step failed: each caller hears why
                    outcomes = [exc] * len(batch)
                for (_, done), outcome in zip(batch, outcomes):
                    done.send(outcome)
        finally:
            self._writing = False


_owned = weakref.WeakKeyDictionary()  # {owner: {name: GroupCommit}}


def group_commit_of(owner, name, write_batch):
    """The GroupCommit `name` of `owner` (a service's store: one per process, living as long as its container),
    made with `write_batch` on first use."""
    batchers = _owned.setdefault(owner, {})
    if name not in batchers:
        batchers[name] = GroupCommit(write_batch, name=name)
    return batchers[name]
