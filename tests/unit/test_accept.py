"""Accept negotiation helpers shared by the plugins (RFC 9110 §12.5.1)."""
from flashplug.http.accept import media_ranges, quality


def test_media_ranges_read_q_and_skip_what_is_not_a_range():
    got = media_ranges("Text/HTML;level=1, application/json; q=0.5, junk, */*;q=bad")
    assert got == [("text/html", 1.0), ("application/json", 0.5), ("*/*", 0.0)]


def test_the_most_specific_range_decides():
    ranges = media_ranges("text/*;q=0.3, text/html;q=0.7, */*;q=0.1")
    assert quality("text/html", ranges) == 0.7      # exact beats text/*
    assert quality("text/plain", ranges) == 0.3     # text/* beats */*
    assert quality("image/png", ranges) == 0.1      # only */*
    assert quality("image/png", media_ranges("text/*")) == 0.0
    # Specificity, not the higher q, wins: an explicit refusal holds.
    assert quality("application/json", media_ranges("*/*, application/json;q=0")) == 0.0


def test_q_outside_the_qvalue_grammar_counts_as_zero():
    """RFC 9110 §12.4.2: Python's float() would take all of these."""
    got = media_ranges("a/a;q=nan, b/b;q=inf, c/c;q=1_0, d/d;q=-1, e/e;q=1.5, "
                       "f/f;q=0.1234, g/g;q=1.000, h/h;q=0., i/i;q= 0.5 ")
    assert got == [("a/a", 0.0), ("b/b", 0.0), ("c/c", 0.0), ("d/d", 0.0), ("e/e", 0.0),
                   ("f/f", 0.0), ("g/g", 1.0), ("h/h", 0.0), ("i/i", 0.5)]
