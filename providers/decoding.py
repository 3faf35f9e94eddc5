"""Incremental Content-Encoding decoders, so a compressed stream can be parsed as it passes."""

from __future__ import annotations

import zlib


class _Identity:
    def decompress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Brotli:
    def __init__(self) -> None:
        import brotli  # a mitmproxy dependency

        self._d = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return self._d.process(data)

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self) -> None:
        import zstandard  # a mitmproxy dependency

        self._d = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data: bytes) -> bytes:
        return self._d.decompress(data)

    def flush(self) -> bytes:
        return b""


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)

    def decompress(self, data: bytes) -> bytes:
        return self._d.decompress(data)

    def flush(self) -> bytes:
        return self._d.flush()


def incremental_decoder(content_encoding: str | None):
    """A decoder with decompress(bytes) and flush(); raises ValueError for an unknown encoding."""
    enc = (content_encoding or "").strip().lower()
    if enc in ("", "identity"):
        return _Identity()
    if enc in ("gzip", "x-gzip"):
        return _Zlib(zlib.MAX_WBITS | 16)
    if enc == "deflate":
        return _Zlib(zlib.MAX_WBITS | 32)  # zlib-wrapped; auto-detected
    if enc == "br":
        return _Brotli()
    if enc == "zstd":
        return _Zstd()
    raise ValueError(f"unsupported content-encoding {content_encoding!r}")
