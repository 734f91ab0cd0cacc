"""The server-sent events reader shared by the CLI and the test clients."""

from jobvisor.sse import SseDecoder


def test_events_comments_multiline_data_and_ids():
    decoder = SseDecoder()
    lines = [b": heartbeat\n", b"event: job\n", b"id: 7\n", b'data: {"a":\n', b"data: 1}\n", b"\n",
             b"\n", b'data: "plain"\r\n', b"\r\n"]
    events = [e for e in map(decoder.feed, lines) if e is not None]
    assert events == [("job", {"a": 1}, "7"), ("message", "plain", "7")]
