"""A line plot written as a PNG with nothing but zlib and struct (no matplotlib, no numpy).

`line_plot_png(xs, ys)` draws axes, a light grid, tick labels (a tiny built-in digit font),
a zero line when the range crosses zero, and the data as a polyline, into an RGB buffer.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRID = (225, 225, 225)
ZERO = (170, 170, 170)
LINE = (31, 119, 180)

# 3x5 glyphs, one string of 15 bits per character, row by row
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", "-": "000000111000000", ".": "000000000000010",
    "e": "000111111100111", "+": "000010111010000",
}


class Canvas:
    def __init__(self, width: int, height: int, background: tuple[int, int, int] = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i:i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        """Bresenham's line, both ends included."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.set(x0, y0, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: tuple[int, int, int] = BLACK, scale: int = 2) -> None:
        for ch in text:
            glyph = _FONT.get(ch)
            if glyph is not None:
                for i, bit in enumerate(glyph):
                    if bit == "1":
                        gx, gy = x + (i % 3) * scale, y + (i // 3) * scale
                        for px in range(scale):
                            for py in range(scale):
                                self.set(gx + px, gy + py, color)
            x += 4 * scale

    def png(self) -> bytes:
        return encode_png(self.width, self.height, self.pixels)


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * 4 * scale - scale


def encode_png(width: int, height: int, rgb: bytes | bytearray) -> bytes:
    """An 8-bit RGB PNG of `rgb` (rows top to bottom, 3 bytes per pixel)."""
    if len(rgb) != width * height * 3:
        raise ValueError("pixel buffer does not match width x height x 3")
    stride = width * 3
    raw = b"".join(b"\x00" + bytes(rgb[y * stride:(y + 1) * stride]) for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.1e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _span(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    return lo, hi


def line_plot_png(xs: Sequence[float], ys: Sequence[float], width: int = 640, height: int = 400, ticks: int = 5) -> bytes:
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    canvas = Canvas(width, height)
    left, right, top, bottom = 80, 20, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    x_lo, x_hi = _span(xs)
    y_lo, y_hi = _span(ys)
    pad = (y_hi - y_lo) * 0.05
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def px(x: float) -> int:
        return left + round((x - x_lo) / (x_hi - x_lo) * (plot_w - 1))

    def py(y: float) -> int:
        return top + plot_h - 1 - round((y - y_lo) / (y_hi - y_lo) * (plot_h - 1))

    for i in range(ticks + 1):  # grid, ticks and labels
        gx = left + round(i * (plot_w - 1) / ticks)
        gy = top + round(i * (plot_h - 1) / ticks)
        canvas.line(gx, top, gx, top + plot_h - 1, GRID)
        canvas.line(left, gy, left + plot_w - 1, gy, GRID)
        canvas.line(gx, top + plot_h, gx, top + plot_h + 4, BLACK)
        canvas.line(left - 5, gy, left - 1, gy, BLACK)
        xl = _label(x_lo + i * (x_hi - x_lo) / ticks)
        canvas.text(gx - text_width(xl) // 2, top + plot_h + 8, xl)
        yl = _label(y_hi - i * (y_hi - y_lo) / ticks)
        canvas.text(left - 8 - text_width(yl), gy - 5, yl)
    if y_lo < 0 < y_hi:
        canvas.line(left, py(0.0), left + plot_w - 1, py(0.0), ZERO)
    canvas.line(left - 1, top, left - 1, top + plot_h, BLACK)  # axes
    canvas.line(left - 1, top + plot_h, left + plot_w - 1, top + plot_h, BLACK)
    previous = None
    for x, y in zip(xs, ys):
        if not (math.isfinite(x) and math.isfinite(y)):
            previous = None
            continue
        point = (px(x), py(y))
        if previous is not None:
            canvas.line(*previous, *point, LINE)
        previous = point
    return canvas.png()
