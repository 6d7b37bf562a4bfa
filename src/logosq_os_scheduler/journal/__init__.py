"""The durable journal: nothing submitted is lost when the scheduler dies.

``QuantumScheduler(journal="runs/sched.db")`` records every submit, start, end and result in
an SQLite file (WAL mode, the standard library's ``sqlite3``, so the core profile still needs
nothing else), by group commit off the event loop. A scheduler that opens an existing journal
recovers it: queued tasks return to their queues, running ones are reattached, run again or
failed by the rules of ``core._recovery``, and finished results are found again by id or
client key. See docs/journal.md for the contract.
"""

from ._journal import Journal, JournalRow
from ._store import Durability

__all__ = ["Durability", "Journal", "JournalRow"]
