"""The stream readers: SSE and NDJSON, fed as a network may split them."""

from __future__ import annotations

from gptterm.remote.sse import DONE, LineParser, SSEParser, SSEvent


def feed_all(parser, chunks):
    out = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


STREAM = (b": keep-alive\n\n"
          b"data: {\"a\": 1}\n\n"
          b":\n\n"
          b"event: error\ndata: {\"message\": \"boom\"}\n\n"
          b"data: line one\ndata: line two\n\n"
          b"data:no space\n\n"
          b"data:  two spaces\n\n"
          b"id: 7\nretry: 100\ndata: x\n\n"
          b"data: [DONE]\n\n")
EXPECTED = [SSEvent('{"a": 1}'), SSEvent('{"message": "boom"}', "error"),
            SSEvent("line one\nline two"), SSEvent("no space"), SSEvent(" two spaces"),
            SSEvent("x"), SSEvent(DONE)]


def test_comments_multiline_data_error_events_and_done():
    assert feed_all(SSEParser(), [STREAM]) == EXPECTED


def test_every_split_of_the_bytes_gives_the_same_events():
    assert feed_all(SSEParser(), bytewise(STREAM)) == EXPECTED
    for cut in range(len(STREAM)):
        assert feed_all(SSEParser(), [STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_crlf_and_lone_cr_end_lines_even_split_between_reads():
    crlf = STREAM.replace(b"\n", b"\r\n")
    cr = STREAM.replace(b"\n", b"\r")
    assert feed_all(SSEParser(), [crlf]) == EXPECTED
    assert feed_all(SSEParser(), bytewise(crlf)) == EXPECTED
    assert feed_all(SSEParser(), bytewise(cr)) == EXPECTED
    # A CR at the end of one read and its LF at the start of the next are one line end.
    assert feed_all(SSEParser(), [b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [
        SSEvent("a"), SSEvent("b")]


def test_a_character_split_across_reads_arrives_whole():
    data = 'data: {"content": "한글 € 🙂"}\n\n'.encode()
    for cut in range(len(data)):
        events = feed_all(SSEParser(), [data[:cut], data[cut:]])
        assert events == [SSEvent('{"content": "한글 € 🙂"}')]
    assert feed_all(SSEParser(), bytewise(data)) == [SSEvent('{"content": "한글 € 🙂"}')]


def test_an_event_is_dispatched_as_soon_as_its_blank_line_arrives():
    parser = SSEParser()
    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\n") == [SSEvent("one")]
    assert parser.feed(b"data: two") == []
    assert parser.close() == []  # no blank line: never dispatched


def test_ndjson_lines():
    data = b'{"response": "a"}\n\n{"response": "\xc3\xa9"}\r\n{"done": true}'
    assert feed_all(LineParser(), bytewise(data)) == [
        '{"response": "a"}', '{"response": "é"}', '{"done": true}']


def test_events_without_data_are_dropped_and_a_byte_order_mark_is_ignored():
    data = "\ufeffdata: a\n\nevent: error\n\ndata:\n\nid: 3\n\ndata: b\n\n".encode()
    assert feed_all(SSEParser(), bytewise(data)) == [SSEvent("a"), SSEvent("b")]
