"""Group commit: requests that arrive while others are being written wait for the next batch and are written
together, so a burst costs a few database (or broker) round trips per batch instead of a few per request.

By default nothing waits for a batch to fill: a request that arrives while nothing else is in flight goes straight
through on its own (`alone()`, the path it takes without batching); one that arrives while others are in flight
joins the next batch, and under load the batches grow by themselves (natural batching, as a database's group
commit of its log). One greenthread per GroupCommit writes the batches, outside any worker, so a caller that gives
up never stalls the ones behind it.

With `linger` (seconds), for work nobody waits on (an event consumer's), no request goes alone: the first one
from idle waits that long for company before its batch is written, as a producer's linger does. At a modest
steady rate, where natural batches hold one or two requests, this buys batches several times larger for a few
milliseconds of delay; under load the batches behind it form as before, without waiting. With `full` (a request
count), the wait ends as soon as that many requests wait: for a consumer, the most messages the broker hands it
at once (its prefetch). Without it, a consumer kept at its prefetch by a busy queue would wait out the linger
before every batch, and fall behind at about prefetch / linger messages a second.

`write_batch(requests)` returns one outcome per request, in order: the caller's answer, an exception to raise to
that caller, or ALONE: the caller handles its request by itself after all (e.g. a retry of a request already
being handled elsewhere, which may have to wait). An exception raised by write_batch reaches every caller of the
batch.

With `overlap` (a request count), for a pipeline whose batches spend most of their time waiting on other
processes: while a batch is in flight, a second one starts as soon as at least that many requests, and no fewer
than the batch in flight holds, are waiting, instead of waiting for the first to end. The machine's cores work on
two batches at once, and neither is smaller than a batch would be without overlap, so the cost per request does
not rise. A writer that ends while another is in flight leaves a smaller queue to it.
"""
import weakref

import eventlet
from eventlet.event import Event

from kit.metrics import BATCH_ALONE, BATCH_SIZE

ALONE = object()


class GroupCommit:
    def __init__(self, write_batch, max_batch=64, name=None, linger=0.0, overlap=None, full=None):
        self.write_batch = write_batch
        self.linger = linger
        self.full = full
        self._company = None  # while the first request's company gathers: an Event sent once `full` wait
        self.overlap = overlap
        self.name = name or write_batch.__name__  # the `batcher` label of its metrics
        self.max_batch = max_batch  # a bound on one batch's size, and on the callers one failure answers
        self._waiting = []  # [(request, Event)]
        self._writers = 0  # greenthreads writing batches: 1, or 2 with overlap
        self._in_flight = []  # the sizes of the batches being written
        self._alone = 0  # requests going through on their own right now
        self.batches = self.batched = 0  # how much was grouped (tests, the bench)

    def submit(self, request, alone):
        if not self.linger and not self._alone and not self._writers:
            BATCH_ALONE.labels(self.name).inc()
            self._alone += 1
            try:
                return alone()
            finally:
                self._alone -= 1
        done = Event()
        self._waiting.append((request, done))
        if self._company is not None and len(self._waiting) >= self.full and not self._company.ready():
            self._company.send()
        if not self._writers or self._second_batch_due():
            self._writers += 1
            eventlet.spawn_n(self._write_batches)
        outcome = done.wait()
        if outcome is ALONE:
            return alone()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _second_batch_due(self):
        return self.overlap is not None and self._writers == 1 and self._worth_overlapping()

    def _worth_overlapping(self):
        """Enough requests wait for a batch beside the one in flight: at least `overlap`, and no fewer than it."""
        return len(self._waiting) >= max([self.overlap or 0, *self._in_flight])

    def _write_batches(self):
        try:
            if self.linger and self._writers == 1:
                self._gather_company()
            # with another writer in flight, this one goes on only with a batch worth overlapping
            while self._waiting and (self._writers == 1 or self._worth_overlapping()):
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                self.batches, self.batched = self.batches + 1, self.batched + len(batch)
                BATCH_SIZE.labels(self.name).observe(len(batch))
                self._in_flight.append(len(batch))
                try:
                    outcomes = self.write_batch([request for request, _ in batch])
                except Exception as exc:  # the database, the broker or a step failed: each caller hears why
                    outcomes = [exc] * len(batch)
                finally:
                    self._in_flight.remove(len(batch))
                for (_, done), outcome in zip(batch, outcomes):
                    done.send(outcome)
        finally:
            self._writers -= 1

    def _gather_company(self):
        """The first request's company gathers (see the module's doc): for `linger`, or until `full` wait."""
        if not self.full:
            eventlet.sleep(self.linger)
            return
        self._company = Event()
        try:
            if len(self._waiting) < self.full:
                with eventlet.Timeout(self.linger, False):
                    self._company.wait()
        finally:
            self._company = None


_owned = weakref.WeakKeyDictionary()  # {owner: {name: GroupCommit}}


def group_commit_of(owner, name, write_batch, **options):
    """The GroupCommit `name` of `owner` (a service's store: one per process, living as long as its container),
    made with `write_batch` (and GroupCommit's `options`) on first use."""
    batchers = _owned.setdefault(owner, {})
    if name not in batchers:
        batchers[name] = GroupCommit(write_batch, name=name, **options)
    return batchers[name]
