"""Counters gathered in one place (the paper's "information gathering").

The loop owns them and increments plain attributes, so counting costs an
attribute store; a future status plugin reads ``as_dict()``.
"""


# The counters, in ``as_dict``'s order.
NAMES = ("connections_total", "requests",
         "bytes_sent", "status_counts",
         "cache_hits", "cache_misses", "cache_revalidations",
         "cache_evictions",
         "helper_calls", "inline_calls",
         "residency_probes", "residency_hits", "residency_offloads",
         "sendfile_calls", "compressions",
         "heads_known", "heads_shaped")


class Stats:
    # ``requests`` is no slot: it is the sum of ``status_counts``, read
    # rarely, while a store per response is paid on every one.
    __slots__ = tuple(name for name in NAMES if name != "requests")

    def __init__(self):
        for name in Stats.__slots__:
            setattr(self, name, 0)
        self.status_counts = {}

    @property
    def requests(self):
        """Responses counted (``count_response``)."""
        return sum(self.status_counts.values())

    def count_response(self, status, body_bytes):
        self.bytes_sent += body_bytes
        # A status seen before, nearly all: one subscript, no dict.get call.
        counts = self.status_counts
        try:
            counts[status] += 1
        except KeyError:
            counts[status] = 1

    def as_dict(self):
        return {name: getattr(self, name) for name in NAMES}
