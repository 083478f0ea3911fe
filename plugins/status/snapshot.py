"""What the status page shows: one flat, ordered table of named values.

Theory of operation: ``FIELDS`` lists every value the page shows, in the
order it shows them, each with its kind and a one-line meaning:

* ``info``:    a label (version, pid, architecture);
* ``gauge``:   a level that goes up and down (open connections, cache bytes);
* ``counter``: a running total since the worker started;
* ``status``:  a family of counters keyed by HTTP status code.

The renderers, ``docs/status.md`` and the tests all read this table, so a
value is added in one place.

``snapshot(app, started)`` reads the values from the running App.  Most are
the kernel's ``Stats`` counters, taken as they are; the rest are levels
read from the App's parts: its open connections, the file cache's
occupancy, the helper pool's size.  Plugins add theirs through the
``flashplug_status`` hook (the fastcgi plugin's backends, say): a scalar,
or a table, one dict per row, shown after everything else.  Those parts are kernel internals, not
the plugin API, so every read goes through ``getattr`` with a default: if
one is renamed the page shows 0 rather than failing.  A counter that the
kernel adds to ``Stats`` later appears after the known ones by itself.

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


def connection_states(connections):
    """(reading, writing, waiting) among ``connections``, as nginx counts them.

    A connection is writing while it has a request in hand (being answered,
    or pipelined behind it) or output queued; reading while it receives a
    request it has not finished; waiting otherwise (idle keep-alive).
    """
    reading = writing = waiting = 0
    for conn in connections:
        if (getattr(conn, "active", None) is not None or getattr(conn, "out", None)
                or getattr(conn, "pending", None)):
            writing += 1
        elif getattr(conn, "state", None) in ("head", "body"):
            reading += 1
        else:
            waiting += 1
    return reading, writing, waiting


def snapshot(app, started):
    """``{name: value}`` in FIELDS order, then any counters Stats has that we
    do not know; ``status_counts`` is ``{code: count}`` sorted by code."""
    config = getattr(app, "config", None)
    stats = getattr(app, "stats", None)
    counters = stats.as_dict() if hasattr(stats, "as_dict") else {}
    connections = getattr(app, "connections", ())
    cache = getattr(getattr(app, "static", None), "cache", None)
    reading, writing, waiting = connection_states(connections)
    measured = {
        "version": flashplug.__version__,
        "pid": os.getpid(),
        "arch": _setting(config, "arch", ""),
        "workers": _setting(config, "workers", 1),
        "helpers": getattr(getattr(app, "helpers", None), "size", 0),
        "start_time_seconds": int(started.wall),
        "uptime_seconds": int(time.monotonic() - started.mono),
        # The App's set of open connections is the count; Stats keeps none.
        "connections_active": len(connections),
        "connections_reading": reading,
        "connections_writing": writing,
        "connections_waiting": waiting,
        "status_counts": dict(sorted(counters.get("status_counts", {}).items())),
        "cache_entries": len(cache) if cache is not None else 0,
        "cache_max_entries": getattr(cache, "max_entries", 0),
        "cache_bytes": getattr(cache, "bytes", 0),
        "cache_max_bytes": getattr(cache, "max_bytes", 0),
        "cache_open_files": getattr(cache, "open_files", 0),
        "cache_max_open_files": getattr(cache, "max_open", 0),
    }
    values = {f.name: measured[f.name] if f.name in measured else counters.get(f.name, 0)
              for f in FIELDS}
    for name, value in counters.items():
        if name not in values and isinstance(value, int):
            values[name] = value
    for name, value in plugin_values(app).items():
        values.setdefault(name, value)
    return values


def plugin_values(app):
    """What enabled plugins report through ``flashplug_status``: scalars
    and tables (lists of dicts), after the kernel's own values."""
    pm = getattr(getattr(app, "config", None), "plugin_manager", None)
    found = {}
    if pm is None:
        return found
    for result in pm.hook.flashplug_status(app=app):
        for name, value in (result or {}).items():
            if isinstance(value, (int, str)) or (
                    isinstance(value, list) and all(isinstance(r, dict) for r in value)):
                found[name] = value
    return found


def _setting(config, name, default):
    get = getattr(config, "get", None)
    value = get(name) if get is not None else None
    return default if value is None else value
