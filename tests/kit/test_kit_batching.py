"""GroupCommit (kit.batching): natural batching, and `overlap`, a second batch in flight when enough requests wait
for one. Pure greenthreads: write_batch sleeps as a call to another process would."""
import time
from functools import partial

import eventlet

from kit.batching import GroupCommit


class Pipeline:
    """A write_batch that takes `seconds` per batch and records what was in flight at once."""

    def __init__(self, seconds=0.02):
        self.seconds = seconds
        self.in_flight, self.sizes, self.overlapping = [], [], []

    def __call__(self, batch):
        self.sizes.append(len(batch))
        if self.in_flight:
            self.overlapping.append((list(self.in_flight), len(batch)))
        self.in_flight.append(len(batch))
        try:
            eventlet.sleep(self.seconds)
        finally:
            self.in_flight.remove(len(batch))
        return [f"done {request}" for request in batch]

    def alone(self, request):
        """A request going through on its own takes as long (it is not a batch: not recorded)."""
        eventlet.sleep(self.seconds)
        return f"alone {request}"


def clients(group, count, requests_each, think=0.0):
    """`count` clients, each submitting `requests_each` requests one after the other (a closed loop, as wrk's
    connections), client c pausing think × (1 + c % 5) between requests so that arrivals spread out as they do
    behind an HTTP server: every answer, in the order the clients got them."""
    answers = []

    def client(c):
        for r in range(requests_each):
            request = f"{c}.{r}"
            answers.append((request, group.submit(request, alone=lambda: group.write_batch.alone(request))))
            eventlet.sleep(think * (1 + c % 5))

    pool = eventlet.GreenPool()
    for c in range(count):
        pool.spawn(client, c)
    pool.waitall()
    return answers


def test_without_overlap_one_batch_is_in_flight_at_a_time():
    # given a pipeline batched the default way
    pipeline = Pipeline()
    group = GroupCommit(pipeline, name="test.plain")

    # when 16 clients send 10 requests each
    answers = clients(group, 16, 10)

    # then every request was answered, once, by its own outcome
    assert sorted(request for request, _ in answers) == sorted(f"{c}.{r}" for c in range(16) for r in range(10))
    assert all(answer in (f"done {request}", f"alone {request}") for request, answer in answers)
    # and no two batches were ever written at once
    assert pipeline.overlapping == []


def test_with_overlap_a_second_batch_starts_once_enough_wait_and_none_is_smaller():
    # given a pipeline whose batches overlap once 4 requests wait
    pipeline = Pipeline()
    group = GroupCommit(pipeline, name="test.overlap", overlap=4)

    # when 16 clients send 10 requests each, pausing between requests (as a client reading its answer)
    answers = clients(group, 16, 10, think=0.005)

    # then every request was answered, once, by its own outcome
    assert sorted(request for request, _ in answers) == sorted(f"{c}.{r}" for c in range(16) for r in range(10))
    assert all(answer in (f"done {request}", f"alone {request}") for request, answer in answers)
    # and batches were written two at a time, never more
    assert pipeline.overlapping, "no second batch ever started while one was in flight"
    assert all(len(in_flight) == 1 for in_flight, _ in pipeline.overlapping)
    # and a second batch started only with at least 4 requests and no fewer than the batch in flight
    assert all(size >= max(4, in_flight[0]) for in_flight, size in pipeline.overlapping)


def test_with_overlap_fewer_waiting_than_in_flight_wait_for_a_writer_and_are_still_answered():
    # given a pipeline whose batches overlap once 4 requests wait, and a batch of 6 in flight
    pipeline = Pipeline(seconds=0.05)
    group = GroupCommit(pipeline, name="test.tail", overlap=4)
    pool = eventlet.GreenPool()
    # one goes alone, then 6 are batched
    first = [pool.spawn(group.submit, f"a{i}", partial(pipeline.alone, f"a{i}")) for i in range(7)]
    eventlet.sleep(0.01)
    assert pipeline.in_flight == [6]

    # when 5 more arrive (at least 4, but fewer than the 6 in flight)
    tail = [pool.spawn(group.submit, f"b{i}", partial(pipeline.alone, f"b{i}")) for i in range(5)]
    eventlet.sleep(0.01)

    # then they wait for the batch in flight rather than start a smaller one beside it
    assert pipeline.in_flight == [6]
    # and they are written, together, once it ends
    assert [t.wait() for t in tail] == [f"done b{i}" for i in range(5)]
    assert pipeline.sizes == [6, 5] and pipeline.overlapping == []
    assert [f.wait() for f in first] == ["alone a0"] + [f"done a{i}" for i in range(1, 7)]


def test_with_overlap_a_failed_batch_answers_its_own_callers_only():
    # given two batches in flight at once, the first of which fails
    in_flight = []

    def write_batch(batch):
        in_flight.append(batch)
        eventlet.sleep(0.03)
        assert len(in_flight) == 2  # both started before either ended
        if "a1" in batch:
            raise ConnectionError("the broker went away")
        return [f"done {request}" for request in batch]

    def alone(request):
        eventlet.sleep(0.03)
        return f"alone {request}"

    group = GroupCommit(write_batch, name="test.fail", overlap=4)
    pool = eventlet.GreenPool()
    first = [pool.spawn(group.submit, f"a{i}", partial(alone, f"a{i}")) for i in range(5)]  # one alone, then 4 batched
    eventlet.sleep(0.005)
    second = [pool.spawn(group.submit, f"b{i}", partial(alone, f"b{i}")) for i in range(4)]  # 4 wait: a second batch

    # then the failed batch's callers hear why, and the other batch's callers get their answers
    outcomes = []
    for f in first[1:]:
        try:
            outcomes.append(f.wait())
        except ConnectionError as exc:
            outcomes.append(str(exc))
    assert outcomes == ["the broker went away"] * 4
    assert [s.wait() for s in second] == [f"done b{i}" for i in range(4)]
    assert group.batches == 2


def submit_together(group, requests):
    """Submit every request at once, each from its own greenthread: their answers, in order."""
    pool = eventlet.GreenPool()
    threads = [pool.spawn(group.submit, request, alone=lambda: "alone") for request in requests]
    return [thread.wait() for thread in threads]


def test_a_linger_ends_as_soon_as_a_full_batch_waits_and_a_smaller_one_waits_it_out():
    # given a consumer's batcher that lingers 5 s for company, full at 4 (the most its broker hands it at once)
    pipeline = Pipeline(seconds=0.0)
    group = GroupCommit(pipeline, name="test.full", linger=5.0, full=4)
    # when 4 events arrive together
    started = time.monotonic()
    answers = submit_together(group, range(4))
    # then they are written as one batch at once: no more can come, so nothing waits out the linger
    assert answers == [f"done {i}" for i in range(4)] and pipeline.sizes == [4]
    assert time.monotonic() - started < 1
    # when 2 arrive together to a batcher that lingers 0.2 s
    group = GroupCommit(pipeline, name="test.not_full", linger=0.2, full=4)
    started = time.monotonic()
    answers = submit_together(group, range(2))
    # then they wait out the linger for company, and go together
    assert answers == ["done 0", "done 1"] and pipeline.sizes == [4, 2]
    assert time.monotonic() - started >= 0.2
