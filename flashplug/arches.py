"""The architectures ``--arch`` chooses from, in one table.

Theory of operation: parser, caches and handlers are shared by all four, so
a benchmark compares only the concurrency model (the Flash paper's point).
The event-loop ones run ``flashplug.worker.Worker`` (``--workers`` of them);
the blocking ones run ``flashplug.blocking``.  ``docs/architecture.md``
shows this table; a test checks the two agree.
"""

ARCHITECTURES = {
    "amped": "one loop + helper threads, residency probe",
    "sped": "one loop, all disk work inline (it blocks the loop)",
    "mt": "a thread per connection, blocking I/O, one cache behind a lock",
    "mp": "`--procs` processes, each serving one connection at a time, private caches",
}
# The architectures without an event loop: static files only.
BLOCKING = ("mt", "mp")
