"""Stream framing: events come out whole and exact whatever the chunk boundaries."""

import random

import pytest
from support import random_splits

from providers.sse import JSONArrayDecoder, NDJSONDecoder, SSEDecoder, decoder_for


def frames_of(decoder, pieces):
    out = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out + decoder.close()


SSE = (
    b": OPENROUTER PROCESSING\r\n\r\n"
    b"event: message_start\r\ndata: {\"a\": \"\xc3\xa9\xe2\x82\xac\"}\r\n\r\n"
    b"data: line one\ndata: line two\n\n"
    b"event: ping\rdata: {}\r\r"
    b"data: [DONE]"  # the last event may end at EOF with no blank line
)


@pytest.mark.parametrize("seed", range(20))
def test_sse_events_are_identical_whatever_the_splits(seed):
    whole = frames_of(SSEDecoder(), [SSE])
    assert [(f.event, f.data) for f in whole] == [
        (None, None),
        ("message_start", '{"a": "é€"}'),
        (None, "line one\nline two"),
        ("ping", "{}"),
        (None, "[DONE]"),
    ]
    assert b"".join(f.raw for f in whole) == SSE  # nothing lost, nothing added
    split = frames_of(SSEDecoder(), random_splits(SSE, random.Random(seed), max_piece=1 + seed % 5))
    assert split == whole


def test_a_cr_at_the_end_of_a_chunk_waits_for_a_possible_lf():
    d = SSEDecoder()
    assert d.feed(b"data: x\r\n\r") == []
    assert [f.data for f in d.feed(b"\ndata: y\r\n\r\n")] == ["x", "y"]


def test_ndjson_lines():
    data = '{"message":{"content":"hé"},"done":false}\n{"done":true,"eval_count":3}\n'.encode()
    frames = frames_of(NDJSONDecoder(), random_splits(data, random.Random(3), 2))
    assert [f.data for f in frames] == ['{"message":{"content":"hé"},"done":false}', '{"done":true,"eval_count":3}']


def test_json_array_elements_and_a_plain_error_object():
    data = b'[{"t": "a}\\"{", "n": [1, {"x": 2}]}\r\n,\r\n{"t": "\xe2\x82\xac"}\r\n]'
    frames = frames_of(JSONArrayDecoder(), random_splits(data, random.Random(5), 3))
    assert [f.data for f in frames if f.data] == ['{"t": "a}\\"{", "n": [1, {"x": 2}]}', '{"t": "€"}']
    error = b'{"error": {"code": 429, "message": "quota"}}'
    assert [f.data for f in frames_of(JSONArrayDecoder(), random_splits(error, random.Random(1), 2))] == [
        error.decode()
    ]


def test_a_truncated_array_element_is_reported_as_unparseable():
    frames = frames_of(JSONArrayDecoder(), [b'[{"a": 1}, {"b": '])
    assert [f.data for f in frames] == ['{"a": 1}', ""]


def test_decoder_for_content_types():
    assert isinstance(decoder_for("text/event-stream; charset=utf-8"), SSEDecoder)
    assert isinstance(decoder_for("application/x-ndjson"), NDJSONDecoder)
    assert isinstance(decoder_for("application/json; charset=UTF-8"), JSONArrayDecoder)


class CountingBuffer(bytearray):
    """A decoder's buffer that counts the bytes each find() looks at: quadratic framing rescans them."""

    scanned = 0

    def find(self, sub, start=0, end=None):
        self.scanned += (len(self) if end is None else end) - start
        return super().find(sub, start, end)


LONG = 4 * 1024 * 1024


@pytest.mark.parametrize("decoder,wire", [
    (SSEDecoder, b"data: " + b"x" * LONG + b"\n\ndata: after\n\n"),
    (SSEDecoder, b": start\r\n\r\ndata: " + b"x" * LONG + b"\r\n\r\ndata: after\r\n\r\n"),
    (NDJSONDecoder, b"\"" + b"x" * LONG + b"\"\n\"after\"\n"),
], ids=["sse-lf", "sse-crlf", "ndjson"])
def test_one_long_event_is_framed_in_linear_time(decoder, wire):
    d = decoder()
    d._buf = buf = CountingBuffer()  # white box: the count is deterministic where a timing is not
    frames = []
    for i in range(0, len(wire), 4096):  # 1,000+ chunks: rescanning each time would look at ~2 GB
        frames += d.feed(wire[i : i + 4096])
    frames += d.close()
    assert [len(f.data) for f in frames if f.data][-2:] in ([LONG, 5], [LONG + 2, 7])
    assert buf.scanned < 3 * len(wire)


@pytest.mark.parametrize("seed", range(5))
def test_long_events_keep_utf8_and_crlf_whole_across_any_boundary(seed):
    text = ("é€" * 50_000).encode()  # past the 64 KiB compaction point, characters cut by chunks
    wire = b"data: " + text + b"\r\n\r\ndata: " + text + b"\n\n" + b"data: " + text + b"\r\r"
    split = random_splits(wire, random.Random(seed), max_piece=9000)
    assert [f.data for f in frames_of(SSEDecoder(), split)] == [text.decode()] * 3


def test_json_array_escapes_survive_one_byte_chunks():
    data = b'[{"t": "a\\\\\\"}]{[", "u": "\\\\"}, {"v": "\xe2\x82\xac\\""}]'
    whole = frames_of(JSONArrayDecoder(), [data])
    assert [f.data for f in whole if f.data] == ['{"t": "a\\\\\\"}]{[", "u": "\\\\"}', '{"v": "€\\""}']
    assert frames_of(JSONArrayDecoder(), [data[i : i + 1] for i in range(len(data))]) == whole


@pytest.mark.parametrize("pieces", [[b"data: a\n\nevent: x\ndata: b\n"], [b"data: a\n", b"\nevent: x\nda", b"ta: b\n"]])
def test_an_lf_stream_ending_without_a_blank_line_keeps_its_last_event(pieces):
    assert [(f.event, f.data) for f in frames_of(SSEDecoder(), pieces)] == [(None, "a"), ("x", "b")]


LF_EVENTS = [b'data: {"n": 1}\n\n', b"event: message_start\ndata: {}\n\n", b": keep-alive\n\n", b"\n\n",
             b"data: \n\n", b"data: a\ndata: b\n\n", b"\ndata: x\n\n", b"data: [DONE]\n\n"]


@pytest.mark.parametrize("seed", range(20))
def test_whole_event_chunks_frame_as_a_byte_at_a_time_does(seed):
    # Chunks that are whole events take the fast path; chunks cut anywhere take the buffered one.
    rng = random.Random(seed)
    events = [rng.choice(LF_EVENTS) for _ in range(12)]
    chunks, i = [], 0
    while i < len(events):  # one to three whole events per chunk, now and then one cut in two
        n = rng.randint(1, 3)
        chunk = b"".join(events[i:i + n])
        i += n
        if rng.random() < 0.3:
            cut = rng.randint(1, len(chunk) - 1)
            chunks += [chunk[:cut], chunk[cut:]]
        else:
            chunks.append(chunk)
    wire = b"".join(events)
    assert frames_of(SSEDecoder(), chunks) == frames_of(SSEDecoder(), [wire[j:j + 1] for j in range(len(wire))])
    assert b"".join(f.raw for f in frames_of(SSEDecoder(), chunks)) == wire
