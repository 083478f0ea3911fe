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
