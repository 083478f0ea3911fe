"""flashplug.http.framing: which statuses carry no content or framing."""
import pytest

from flashplug.http.framing import is_bodiless, must_be_empty, strip_framing_for_status

HEADERS = [("Content-Type", "text/plain"), ("content-length", "5"),
           ("Transfer-Encoding", "chunked"), ("X-A", "1")]


@pytest.mark.parametrize("status", [100, 101, 103, 199, 204, 304])
def test_bodiless_statuses_lose_both_framing_fields(status):
    assert is_bodiless(status) and must_be_empty(status)
    assert strip_framing_for_status(status, HEADERS) == [
        ("Content-Type", "text/plain"), ("X-A", "1")]


def test_205_has_no_content_but_is_framed_by_the_writer():
    assert must_be_empty(205) and not is_bodiless(205)
    assert strip_framing_for_status(205, HEADERS) == [
        ("Content-Type", "text/plain"), ("X-A", "1")]


@pytest.mark.parametrize("status", [200, 201, 206, 300, 302, 305, 404, 500, 599])
def test_other_statuses_keep_their_headers_untouched(status):
    assert not must_be_empty(status)
    assert strip_framing_for_status(status, HEADERS) is HEADERS
