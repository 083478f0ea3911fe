"""Unit tests of the HTTP/1.1 differential harness's pure parts (no servers):
the corpus, how responses are read back and how the table marks a row.
The harness itself starts four servers and is run by hand
(docs/reliability.md), not in CI."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import h1_differential as h1  # noqa: E402


def test_the_corpus_is_big_and_its_ids_unique():
    ids = [case_id for case_id, _, _ in h1.CORPUS]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)


def test_pipelined_responses_are_read_one_by_one():
    data = (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    got = h1.parse_responses(data, head=False)
    assert [r["status"] for r in got] == [200, 404, 400]
    assert got[2]["connection"] == "close"


def test_content_after_a_heads_answer_shows_as_junk():
    data = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\noops!"
    assert [r["status"] for r in h1.parse_responses(data, head=True)] == [400, "junk"]
    assert [r["status"] for r in h1.parse_responses(data, head=False)] == [400]


def test_a_1xx_is_followed_by_the_final_response():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert [r["status"] for r in h1.parse_responses(data, head=False)] == [100, 200]


def test_rows_are_marked_where_flashplug_differs():
    cases = [("a", b"", False), ("b", b"", False), ("c", b"", False)]
    ok = {"responses": [{"status": 200}], "end": "O"}
    bad = {"responses": [{"status": 400}], "end": "C"}
    results = {"flashplug": {"a": ok, "b": bad, "c": bad},
               "nginx": {"a": ok, "b": ok, "c": bad},
               "apache": {"a": ok, "b": ok, "c": ok}}
    rows = h1.table(["flashplug", "nginx", "apache"], cases, results, only_diff=False)
    marks = [line.rsplit("|", 2)[1].strip() for line in rows.splitlines()[2:]]
    assert marks == ["", "*", "~"]
    only = h1.table(["flashplug", "nginx", "apache"], cases, results, only_diff=True)
    assert len(only.splitlines()) == 4


def test_a_chunked_body_is_read_chunk_by_chunk():
    # "0" CRLF CRLF inside a chunk's data is no last chunk.
    data = (b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"d\r\nlen 7500\r\n\r\n0\r\n0\r\nX-T: 1\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert [r["status"] for r in h1.parse_responses(data, head=False)] == [206, 200]


def test_a_case_may_be_cut_into_segments_and_cells_show_fields():
    assert any(isinstance(data, tuple) for _, data, _ in h1.CORPUS)
    result = {"responses": [{"status": 206, "content-range": "bytes 0-1/9",
                             "content-type": "text/plain; charset=utf-8"}], "end": "O"}
    assert h1.cell(result) == "206 O"
    assert h1.cell(result, ["content-range", "content-type"]) == "206[bytes 0-1/9 text/plain] O"
