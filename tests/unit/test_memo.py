"""``flashplug.memo.Memo``: a bounded memo, forgotten all at once when full."""
from flashplug.memo import Memo


def test_put_remembers_and_returns_the_value():
    memo = Memo(4)
    assert memo.put("a", 1) == 1
    assert memo.data.get("a") == 1 and memo.data.get("b") is None
    assert len(memo) == 1 and memo


def test_full_it_forgets_everything_at_once():
    memo = Memo(3)
    for key in "abc":
        memo.put(key, key.upper())
    assert len(memo) == 3
    memo.put("d", "D")                  # full: a, b and c go, d stays
    assert memo.data == {"d": "D"}
    for key in "efghijk":
        memo.put(key, key)
        assert len(memo) <= 3


def test_putting_a_key_again_counts_as_putting():
    """As the hand-written memos it replaces: the bound is checked before
    every put, a key already there included."""
    memo = Memo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("a", 3)
    assert memo.data == {"a": 3}


def test_the_dict_is_kept_across_clears():
    """``data`` is never replaced: a bound ``data.get`` kept elsewhere
    (``KnownRequests.get``) sees what is put after a clear."""
    memo = Memo(1)
    get = memo.data.get
    memo.put("a", 1)
    memo.put("b", 2)
    memo.clear()
    assert not memo and len(memo) == 0
    memo.put("c", 3)
    assert get("c") == 3 and get("a") is None


def test_data_is_an_exact_dict():
    """Lookups go to a plain dict: CPython specializes its ``get``, ``in``
    and ``[]`` only for an exact ``dict`` (see the module's notes)."""
    assert type(Memo(8).data) is dict


def test_the_bound_is_each_places_own():
    from flashplug.http import h1_checks, validate
    from flashplug.http.known_requests import KNOWN_REQUESTS, KnownRequests
    assert validate._BLOCKS.limit == validate._BLOCKS_MAX == 512
    assert h1_checks._HOST_NAMES.limit == 1024
    known = KnownRequests()
    assert known.heads.limit == KNOWN_REQUESTS and known.seen.limit == 4 * KNOWN_REQUESTS
