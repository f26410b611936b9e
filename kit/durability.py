"""How long a write waits before MongoDB acknowledges it: the two write concerns Quanzi says where a write is made
(the client's default is the server's, majority, which on a replica set also means journaled; a write that
correctness rests on says DURABLE rather than rely on that default).

A write may be APPLIED only when losing it costs nothing: its work is redone once it is lost, and the redo is
idempotent (an event relayed again and deduped by its consumers; a provider's notification sent again and answered
as a repeat; the catalog's tidy of holds, redone by its sweep). An APPLIED write is acknowledged once the primary
applied it; it is journaled with the next durable write, or within mongod's commit interval (100 ms).

Why it matters: a durable write that is not part of a transaction costs a journal sync of its own whenever
nothing else is syncing. Of a pay's 0.61 syncs, the outbox marking events sent and the sandbox recording the
notifications the shop acknowledged were 0.2; both are APPLIED (docs/architecture.md, "Concurrency rules").

A later durable write does not make an earlier APPLIED one durable: after a failover, the later write may commit
on the new primary while the earlier one is rolled back with the old. So a write that anyone outside may hear of
(a payment the provider answers for, a stock hold) is DURABLE itself."""
from pymongo.write_concern import WriteConcern

DURABLE = WriteConcern("majority")
APPLIED = WriteConcern(w=1)
