"""The status page's formats, and how a request picks one (pure).

Theory of operation: a snapshot (``snapshot.snapshot``) is a flat dict of
named values; each renderer turns it into bytes:

* ``text``: one ``name: value`` line each, for people, ``grep`` and
  scripts; the status codes as ``status_200: 41`` lines;
* ``json``: one object with the same names; ``status_counts`` is an object
  keyed by code;
* ``prometheus``: the Prometheus text exposition format (0.0.4), names
  prefixed ``flashplug_``, counters suffixed ``_total``, the labels
  (version, arch, pid) on one ``flashplug_info`` gauge.

``choose_format`` reads ``?format=`` first; Apache's ``?auto`` (its
machine-readable page) means text; otherwise ``Accept`` chooses between
JSON and text, and text wins ties, so browsers and curl get text.
"""
import json
from urllib.parse import parse_qsl

from flashplug.http.accept import media_ranges, quality

from .snapshot import FIELDS, KINDS

FORMATS = ("text", "json", "prometheus")
CONTENT_TYPES = {
    "text": "text/plain; charset=utf-8",
    "json": "application/json",
    "prometheus": "text/plain; version=0.0.4; charset=utf-8",
}
# Media types each format answers to in Accept; Prometheus is never picked
# by Accept, since its scraper also accepts plain text.
_MEDIA = {"json": "application/json", "text": "text/plain"}

_MEANINGS = {f.name: f.meaning for f in FIELDS}


class QueryError(ValueError):
    """A query string asking for something we do not make (a 400)."""


def choose_format(query, accept):
    params = dict(parse_qsl(query or "", keep_blank_values=True))
    fmt = params.get("format")
    if fmt is not None:
        if fmt not in FORMATS:
            # The message reaches error pages: it must not echo the request.
            raise QueryError(f"unknown format; allowed values are {', '.join(FORMATS)}")
        return fmt
    if "auto" in params:
        return "text"
    return negotiate(accept)


def negotiate(accept):
    """"json" when ``Accept`` prefers application/json to text/plain.

    Each takes the quality of the most specific media range matching it
    (RFC 9110 §12.5.1); without an ``Accept``, or on a tie, text.
    """
    if not accept:
        return "text"
    ranges = media_ranges(accept)
    qualities = {fmt: quality(media, ranges) for fmt, media in _MEDIA.items()}
    return "json" if qualities["json"] > qualities["text"] else "text"


# -- renderers ------------------------------------------------------------------------

def render_text(values):
    lines = []
    for name, value in values.items():
        if KINDS.get(name) == "status":
            lines.extend(f"status_{code}: {count}" for code, count in value.items())
        elif isinstance(value, list):
            lines.extend(f"{name}: " + " ".join(f"{k}={v}" for k, v in row.items())
                         for row in value)
        else:
            lines.append(f"{name}: {value}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def render_json(values):
    # json turns the integer status codes into string keys, as JSON must.
    return (json.dumps(values, indent=2) + "\n").encode("utf-8")


def render_prometheus(values):
    info = {name: value for name, value in values.items() if KINDS.get(name) == "info"}
    labels = ",".join(f'{name}="{_label(value)}"' for name, value in info.items())
    lines = ["# HELP flashplug_info the server that answered, as labels",
             "# TYPE flashplug_info gauge",
             f"flashplug_info{{{labels}}} 1"]
    for name, value in values.items():
        kind = KINDS.get(name, "counter")   # Stats counters newer than this table
        if kind == "info" or isinstance(value, str):
            continue
        if isinstance(value, list):
            lines += _table_samples(name, value)
            continue
        if kind == "status":
            metric = "flashplug_responses_total"
            samples = [f'{metric}{{code="{code}"}} {count}' for code, count in value.items()]
            kind = "counter"
        else:
            metric = "flashplug_" + name
            if kind == "counter" and not metric.endswith("_total"):
                metric += "_total"
            samples = [f"{metric} {value}"]
        meaning = _MEANINGS.get(name, name.replace("_", " ")).replace("`", "")
        lines += [f"# HELP {metric} {meaning}", f"# TYPE {metric} {kind}", *samples]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _table_samples(name, rows):
    """A plugin's table: each int column a gauge, labelled by the str ones."""
    columns = [k for k, v in (rows[0].items() if rows else ()) if isinstance(v, int)]
    lines = []
    for column in columns:
        metric = f"flashplug_{name}_{column}"
        lines += [f"# HELP {metric} {name.replace('_', ' ')}: {column}",
                  f"# TYPE {metric} gauge"]
        for row in rows:
            labels = ",".join(f'{k}="{_label(v)}"' for k, v in row.items()
                              if isinstance(v, str))
            lines.append(f"{metric}{{{labels}}} {row.get(column, 0)}")
    return lines


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


RENDERERS = {"text": render_text, "json": render_json, "prometheus": render_prometheus}
