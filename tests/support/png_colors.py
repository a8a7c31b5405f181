#!/usr/bin/env python3
"""Counts the distinct colours in a rectangle of a PNG (8-bit RGB or RGBA, non-interlaced, as
Chromium's screenshots are), with the standard library only.

  png_colors.py FILE X0 Y0 X1 Y1     prints the count; exit 1 if the file cannot be read

A blank chart area is one or two colours; a drawn chart has axes, grid, labels and lines in
many (anti-aliased) shades.
"""
import struct
import sys
import zlib


def read_png(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace != 0:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        previous = line
    return width, height, bpp, rows


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        width, height, bpp, rows = read_png(sys.argv[1])
    except (OSError, ValueError, TypeError, zlib.error) as e:
        print(f"png_colors: {e}", file=sys.stderr)
        return 1
    x0, y0, x1, y1 = (int(v) for v in sys.argv[2:])
    colours = set()
    for y in range(max(0, y0), min(height, y1)):
        row = rows[y]
        for x in range(max(0, x0), min(width, x1)):
            colours.add(bytes(row[x * bpp:x * bpp + 3]))
    print(len(colours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
