"""A small LRU map bounded by item count and by total weight (bytes).

Theory of operation: autoindex keeps two of these, one for scanned
listings and one for rendered bodies.  Both bounds matter: the count keeps
bookkeeping small, the weight keeps a few huge folders from holding an
unbounded amount of memory.  An item heavier than the whole budget is not
kept at all.  A lock makes it safe for the ``mt`` architecture, where
several threads serve requests; on the event loop it is never contended.
"""
import threading
from collections import OrderedDict


class BoundedLRU:
    def __init__(self, max_items, max_weight):
        self.max_items = max_items
        self.max_weight = max_weight
        self.weight = 0
        self._items = OrderedDict()   # key -> (value, weight)
        self._lock = threading.Lock()

    def get(self, key, default=None):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return default
            self._items.move_to_end(key)
            return item[0]

    def put(self, key, value, weight):
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            if weight > self.max_weight:
                return
            self._items[key] = (value, weight)
            self.weight += weight
            while len(self._items) > self.max_items or self.weight > self.max_weight:
                _, (_, w) = self._items.popitem(last=False)
                self.weight -= w

    def __len__(self):
        return len(self._items)

    def __contains__(self, key):
        return key in self._items
