"""Tiny hand-made files for bad-input tests (PNG chunks written byte by byte, no encoder)."""

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, depth, colour, rows, palette=None, idat=None):
    """A PNG of raw scanlines ``rows`` (filter type 0 is prepended to each).

    ``colour``: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA; ``depth`` 1..16 bits per sample.
    ``idat`` replaces the compressed pixel data (e.g. a few bytes for a header-only bomb).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = zlib.compress(b"".join(b"\0" + r for r in rows)) if idat is None else idat
    out = PNG_SIGNATURE + png_chunk(b"IHDR", ihdr)
    if palette is not None:
        out += png_chunk(b"PLTE", palette)
    return out + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
