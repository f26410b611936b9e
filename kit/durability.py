"""How long a write waits before MongoDB acknowledges it: the two write concerns Quanzi uses, said where a write
is made rather than left to the client's default (the server's: majority, which on a replica set also means
journaled).

Every write waits until it is DURABLE, except those that may be APPLIED only. On a busy stack, each durable
write that is not part of a transaction costs a journal sync of its own when nothing else is syncing: of a pay's
0.61 syncs, 0.27 came from the outbox marking events sent and the sandbox recording its payments and their
notifications (docs/architecture.md, "Concurrency rules", "Durability").

A write may be APPLIED only when losing it costs nothing, because either:
- its work is redone once it is lost, and the redo is idempotent (an event relayed again and deduped by its
  consumers; a provider's notification sent again and answered as a repeat); or
- a DURABLE write to the same replica set follows it before anyone outside is told of it. The journal and the
  oplog keep writes in order: a crash or a failover keeps a prefix of them, so once the later write is durable the
  earlier one is too, and when the earlier one is lost the later one is lost with it.
An APPLIED write is acknowledged once the primary applied it. It is journaled with the next durable write of the
replica set, or within mongod's commit interval (100 ms), whichever comes first."""
from pymongo.write_concern import WriteConcern

DURABLE = WriteConcern("majority")
APPLIED = WriteConcern(w=1)
