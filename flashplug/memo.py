"""A bounded memo: results remembered by key, all forgotten at once when full.

The server remembers many small answers that depend only on their key (a
Host value's site, a list of fields found valid, a request head's parse,
an upstream's response head...): the same few keys come again and again,
but the keys come from clients and backends, so the memory must be
bounded.  Forgetting everything at once when the bound is reached is the
cheapest policy that is bounded (no order kept, nothing to update on a
hit): a working set smaller than the bound is soon remembered again.

Lookups go to ``data``, a plain ``dict``, on purpose: CPython specializes
``d.get(k)``, ``k in d`` and ``d[k]`` only for an exact ``dict``, so a
``dict`` subclass would cost about 170 more instructions a lookup (3.11,
callgrind); the attribute load in front costs about 25.  Only ``put``, on
a miss, is a call of ours.  ``data`` is the same object for the memo's
life (cleared, never replaced), so a bound ``data.get`` stays valid.
"""


class Memo:
    """Up to ``limit`` entries in ``data`` (a dict: look up with
    ``memo.data.get(key)``); ``put`` adds one, emptying ``data`` first
    when it holds ``limit``."""

    __slots__ = ("data", "limit")

    def __init__(self, limit):
        self.data = {}
        self.limit = limit

    def put(self, key, value):
        """Remember ``value`` for ``key``; returns ``value``."""
        data = self.data
        if len(data) >= self.limit:
            data.clear()
        data[key] = value
        return value

    def clear(self):
        self.data.clear()

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return f"<Memo {len(self.data)}/{self.limit}>"
