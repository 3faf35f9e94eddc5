"""How long the stream framers take on one long event, fed in network-sized chunks: linear framing
keeps the per-MB time flat as the event grows.

    python scripts/bench_sse.py [--mb 5 20] [--chunk 16384]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from providers.sse import JSONArrayDecoder, NDJSONDecoder, SSEDecoder  # noqa: E402


def event(kind: str, size: int) -> bytes:
    text = b'{"text": "' + b"x" * size + b'"}'
    if kind == "sse-lf":
        return b"data: " + text + b"\n\n"
    if kind == "sse-crlf":
        return b"data: " + text + b"\r\n\r\n"
    if kind == "ndjson":
        return text + b"\n"
    return b"[" + text + b"]"


DECODERS = {"sse-lf": SSEDecoder, "sse-crlf": SSEDecoder, "ndjson": NDJSONDecoder, "json-array": JSONArrayDecoder}


def run(kind: str, mb: int, chunk: int) -> float:
    data, decoder = event(kind, mb * 1024 * 1024), DECODERS[kind]()
    started = time.perf_counter()
    frames = []
    for i in range(0, len(data), chunk):
        frames += decoder.feed(data[i : i + chunk])
    frames += decoder.close()
    elapsed = time.perf_counter() - started
    assert any(f.data for f in frames), kind
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--chunk", type=int, default=16384)
    parser.add_argument("--kinds", nargs="+", default=list(DECODERS))
    args = parser.parse_args()
    for kind in args.kinds:
        for mb in args.mb:
            elapsed = run(kind, mb, args.chunk)
            print(f"{kind:10} {mb:3} MB in {args.chunk} B chunks: {elapsed:7.3f} s ({elapsed / mb * 1000:6.1f} ms/MB)")


if __name__ == "__main__":
    main()
