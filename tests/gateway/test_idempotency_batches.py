"""The gateway's idempotency records under load, against the real MongoDB: claims and answers written in batches."""
import uuid

import eventlet


def test_keys_claimed_and_answered_together_are_written_in_one_insert_and_one_update(mongo):
    """Group commit of the idempotency records: claims that arrive while others are in flight are inserted
    together, a key claimed twice in one batch is claimed once (the second waits for its answer and replays it),
    and the answers are stored with one bulk update."""
    from werkzeug.wrappers import Response

    from gateway import idempotency
    keys = idempotency.IdempotencyKeys(mongo["quanzi_test_scratch"][f"idempotency_{uuid.uuid4().hex[:8]}"])
    for batcher in (keys._claims, keys._answers):
        batcher._alone += 1  # given requests in flight: what arrives now waits for the next batch
    outcomes = {}

    def request(name, record_id, body_hash):
        replay = keys.begin(record_id, body_hash, "usr_1")
        if replay is None:
            keys.finish(record_id, Response(f'{{"made": "{name}"}}', status=201))
            outcomes[name] = "ran"
        else:
            outcomes[name] = replay.get_data(as_text=True)
    # when four requests arrive together, two of them with the same key
    pool = eventlet.GreenPool()
    for name, record_id in (("a", "r1"), ("b", "r2"), ("c", "r3"), ("a-again", "r1")):
        pool.spawn_n(request, name, record_id, "h")
    pool.waitall()
    for batcher in (keys._claims, keys._answers):
        batcher._alone -= 1
    # then three ran, the repeat replayed the first one's answer, and every answer is stored
    assert {k: v for k, v in outcomes.items() if k != "a-again"} == {"a": "ran", "b": "ran", "c": "ran"}
    assert outcomes["a-again"] == '{"made": "a"}'
    assert keys._claims.batched == 4 and keys._claims.batches == 1
    assert sorted((r["_id"], r["state"], r["status"]) for r in keys.records.find()) == \
        [("r1", "done", 201), ("r2", "done", 201), ("r3", "done", 201)]
