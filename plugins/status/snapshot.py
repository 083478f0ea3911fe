"""What the status page shows: one flat, ordered table of named values.

Theory of operation: ``FIELDS`` lists every value the page shows, in the
order it shows them, each with its kind and a one-line meaning:

* ``info``:    a label (version, pid, architecture);
* ``gauge``:   a level that goes up and down (open connections, cache bytes);
* ``counter``: a running total since the worker started;
* ``status``:  a family of counters keyed by HTTP status code.

The renderers, ``docs/status.md`` and the tests all read this table, so a
value is added in one place.

``snapshot(server, started)`` reads the values from the server object the
kernel gives plugins (``flashplug.facade.Server``, documented in
docs/plugins.md): most are its ``stats`` counters, taken as they are; the
rest are levels it reports: ``connection_counts()``, ``cache_info()`` and
the helper pool's size.  Plugins add theirs through the ``flashplug_status``
hook (the fastcgi plugin's backends, say), gathered by
``server.plugin_status()``: a scalar, or a table, one dict per row, shown
after everything else.  A counter that the kernel adds to ``Stats`` later
appears after the known ones by itself.

The snapshot is taken on the event loop, which owns every value read, so it
needs no lock and shows one moment.  With ``--workers N`` each worker has
its own App, so it shows that worker only (``pid`` says which).
"""
import os
import time
from typing import NamedTuple

import flashplug


class Field(NamedTuple):
    name: str
    kind: str
    meaning: str


FIELDS = (
    Field("version", "info", "flashplug's version"),
    Field("pid", "info", "process id of the worker that answered"),
    Field("arch", "info", "concurrency architecture (`--arch`)"),
    Field("workers", "gauge", "worker processes configured (`--workers`); each counts on its own"),
    Field("helpers", "gauge", "helper threads of this worker (0: disk work runs inline)"),
    Field("start_time_seconds", "gauge", "when this worker started, in Unix seconds"),
    Field("uptime_seconds", "gauge", "seconds since this worker started"),
    Field("connections_active", "gauge", "client connections open now"),
    Field("connections_reading", "gauge", "of those, reading a request's head or body"),
    Field("connections_writing", "gauge", "of those, answering (this request included)"),
    Field("connections_waiting", "gauge", "of those, idle keep-alive connections"),
    Field("connections_total", "counter", "connections accepted"),
    Field("requests", "counter", "responses sent (the one being read is not counted yet)"),
    Field("bytes_sent", "counter", "response body bytes sent"),
    Field("status_counts", "status", "responses sent, by status code"),
    Field("heads_known", "counter", "requests answered from a request head remembered byte for byte (no parse)"),
    Field("heads_shaped", "counter", "requests answered from a remembered head shape: same fields, other "
          "request-target or cookie (no parse)"),
    Field("cache_hits", "counter", "requests answered from the file cache"),
    Field("cache_misses", "counter", "requests that had to look a file up on disk"),
    Field("cache_revalidations", "counter", "cached files checked on disk again (`--cache-valid`)"),
    Field("cache_evictions", "counter", "cached files dropped to stay within the cache's bounds"),
    Field("cache_entries", "gauge", "paths in the file cache"),
    Field("cache_max_entries", "gauge", "the most it keeps (`--cache-entries`)"),
    Field("cache_bytes", "gauge", "file contents held in memory, in bytes"),
    Field("cache_max_bytes", "gauge", "the memory budget for them (`--cache-size`)"),
    Field("cache_open_files", "gauge", "large files held open for `sendfile`"),
    Field("cache_max_open_files", "gauge", "the most it holds open"),
    Field("compressions", "counter", "files compressed by `--compress` (once a version and coding)"),
    Field("residency_probes", "counter", "checks whether a file's pages are in memory"),
    Field("residency_hits", "counter", "probes that found them in memory (sent from the loop)"),
    Field("residency_offloads", "counter", "probes that did not (sent by a helper)"),
    Field("sendfile_calls", "counter", "`sendfile` calls made"),
    Field("helper_calls", "counter", "blocking calls handed to helper threads"),
    Field("inline_calls", "counter", "blocking calls run inline (`--arch sped`)"),
)

KINDS = {f.name: f.kind for f in FIELDS}


class Started(NamedTuple):
    wall: float          # time.time() at start, for start_time_seconds
    mono: float          # time.monotonic() at start, for the uptime


def started_now():
    return Started(time.time(), time.monotonic())


def snapshot(server, started):
    """``{name: value}`` in FIELDS order, then any counters Stats has that we
    do not know; ``status_counts`` is ``{code: count}`` sorted by code."""
    config = server.config
    counters = server.stats.as_dict()
    active, reading, writing, waiting = server.connection_counts()
    cache = server.cache_info()
    measured = {
        "version": flashplug.__version__,
        "pid": os.getpid(),
        "arch": config.get("arch", ""),
        "workers": config.get("workers", 1),
        "helpers": server.helpers.size,
        "start_time_seconds": int(started.wall),
        "uptime_seconds": int(time.monotonic() - started.mono),
        "connections_active": active,
        "connections_reading": reading,
        "connections_writing": writing,
        "connections_waiting": waiting,
        "status_counts": dict(sorted(counters.get("status_counts", {}).items())),
        "cache_entries": cache["entries"],
        "cache_max_entries": cache["max_entries"],
        "cache_bytes": cache["bytes"],
        "cache_max_bytes": cache["max_bytes"],
        "cache_open_files": cache["open_files"],
        "cache_max_open_files": cache["max_open_files"],
    }
    values = {f.name: measured[f.name] if f.name in measured else counters.get(f.name, 0)
              for f in FIELDS}
    for name, value in counters.items():
        if name not in values and isinstance(value, int):
            values[name] = value
    for name, value in server.plugin_status().items():
        values.setdefault(name, value)
    return values

