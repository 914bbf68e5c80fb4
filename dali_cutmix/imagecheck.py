"""A quick check of one image file, at file-system speed: does DALI stand a chance of decoding it? Size, magic
bytes, the headers that parse, the JPEG end marker, the pixel size; and the error a bad file raises."""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from .errors import UserError

#: What the quick check (:func:`check_image_file`) says about a file: DALI decodes it; DALI decodes it but it is
#: worth knowing (another format than its name says, CMYK, grayscale, progressive, EXIF-rotated, tiny, ...);
#: DALI cannot read it (the reason says why).
USABLE, UNUSUAL, BAD = "usable", "unusual", "bad"
STATUSES = (USABLE, UNUSUAL, BAD)


class BadFileError(UserError):
    """An image file DALI could not read: the message, one line, names it (``path``, None when DALI did not say
    which file) and says why (``reason``); ``dali`` is DALI's own line. ``shard``: the image is a sample of a tar
    shard (``path`` is None: a run cannot skip it; the message says what to do)."""

    def __init__(self, message: str, *, path: Optional[Path] = None, reason: str = "", dali: str = "",
                 shard: bool = False):
        super().__init__(message)
        self.path = path
        self.reason = reason
        self.dali = dali
        self.shard = shard


@dataclass(frozen=True)
class FileCheck:
    """What :func:`check_image_file` found: ``status`` (one of :data:`STATUSES`), the ``format`` the bytes are
    ("jpeg", "png", "bmp", "tiff", "webp", "jpeg2000"; "" when not an image DALI decodes), ``detail`` (for
    "unusual": the kinds, comma-separated; for "bad": the reason) and the pixel size (0 when unknown)."""

    status: str
    format: str = ""
    detail: str = ""
    width: int = 0
    height: int = 0

    @property
    def usable(self) -> bool:
        """DALI decodes the file (status "usable" or "unusual")."""
        return self.status != BAD


#: Formats by extension, to name a file whose bytes are another format than its name says.
_FORMAT_OF_EXTENSION = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp", ".tif": "tiff",
                        ".tiff": "tiff", ".webp": "webp"}
#: The sides below which an image is called tiny (it still decodes; the random crop upsamples it).
TINY_SIDE = 16
_HEAD = 4096
_TAIL = 4096
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: JPEG start-of-frame markers (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class _Reader:
    """Bytes of an open file at any offset: from the first :data:`_HEAD` bytes when they hold them, else pread."""

    def __init__(self, fd: int, size: int):
        self.fd, self.size = fd, size
        self.head = os.pread(fd, _HEAD, 0)

    def read(self, offset: int, n: int) -> bytes:
        if offset + n <= len(self.head):
            return self.head[offset:offset + n]
        return os.pread(self.fd, n, offset)

    def tail(self, n: int) -> bytes:
        start = max(0, self.size - n)
        return self.read(start, self.size - start)


class _Bad(Exception):
    """Raised inside a format check: the file is bad, for the message's reason."""


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) in an APP1 segment's payload, 1 when it has none or does not parse."""
    if not data.startswith(b"Exif\x00\x00") or len(data) < 14:
        return 1
    tiff = data[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(count):
            tag, kind, _, value = struct.unpack_from(order + "HHI4s", tiff, ifd + 2 + 12 * i)
            if tag == 0x0112 and kind == 3:
                return struct.unpack_from(order + "H", value)[0]
    except struct.error:
        return 1
    return 1


def _check_jpeg(r: _Reader, kinds: List[str]) -> Tuple[int, int]:
    """Walk the JPEG's segments up to the scan; check the end marker. Returns (width, height)."""
    pos, frame, sos = 2, None, None
    while sos is None:
        marker = r.read(pos, 4)
        if len(marker) < 2:
            raise _Bad("truncated: the file ends inside the JPEG header")
        if marker[0] != 0xFF:
            raise _Bad(f"JPEG header does not parse: no marker at byte {pos}")
        code = marker[1]
        if code == 0xFF:  # fill byte
            pos += 1
            continue
        if code in (0x01, 0xD8) or 0xD0 <= code <= 0xD7:
            pos += 2
            continue
        if code == 0xD9:
            raise _Bad("JPEG holds no image data (end marker before any scan)")
        if code < 0xC0:
            raise _Bad(f"JPEG header does not parse: no valid marker at byte {pos} (0xff{code:02x})")
        if len(marker) < 4:
            raise _Bad("truncated: the file ends inside the JPEG header")
        (length,) = struct.unpack(">H", marker[2:4])
        if length < 2:
            raise _Bad(f"JPEG header does not parse: segment of length {length} at byte {pos}")
        if pos + 2 + length > r.size:
            raise _Bad("truncated or corrupt: a JPEG header segment runs past the end of the file")
        if code in _SOF_MARKERS:
            body = r.read(pos + 4, 6)
            precision, height, width, components = struct.unpack(">BHHB", body)
            frame = (code, precision, width, height, components)
        elif code == 0xE1 and length >= 16:
            orientation = _exif_orientation(r.read(pos + 4, min(length - 2, 1024)))
            if orientation not in (0, 1):
                kinds.append(f"EXIF-rotated (orientation {orientation})")
        elif code == 0xDA:
            sos = pos
        pos += 2 + length
    if frame is None:
        raise _Bad("JPEG header does not parse: no frame header (SOF) before the scan")
    code, precision, width, height, components = frame
    if width == 0 or height == 0:
        raise _Bad(f"JPEG declares a {width}x{height} image")
    if code in (0xC2, 0xC6, 0xCA, 0xCE):
        kinds.append("progressive")
    if code in (0xC3, 0xC7, 0xCB, 0xCF):
        kinds.append("lossless JPEG")
    if code >= 0xC9:
        kinds.append("arithmetic-coded")
    if precision != 8:
        kinds.append(f"{precision}-bit")
    kinds.extend({1: ["grayscale"], 4: ["CMYK"]}.get(components, [] if components == 3
                                                     else [f"{components} components"]))
    if r.read(r.size - 2, 2) != b"\xff\xd9":
        tail = r.tail(min(_TAIL, r.size - pos))
        if b"\xff\xd9" not in tail:
            raise _Bad("truncated: no JPEG end marker")
        kinds.append("data after the JPEG end marker")
    return width, height


def _check_png(r: _Reader, kinds: List[str]) -> Tuple[int, int]:
    ihdr = r.read(8, 25)
    if len(ihdr) < 25 or ihdr[4:8] != b"IHDR":
        raise _Bad("PNG header does not parse: no IHDR chunk")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[8:21])
    if width == 0 or height == 0:
        raise _Bad(f"PNG declares a {width}x{height} image")
    if colour in (0, 4):
        kinds.append("grayscale")
    if depth == 16:
        kinds.append("16-bit")
    if interlace:
        kinds.append("interlaced")
    if r.tail(12) != _PNG_IEND:
        if b"IEND" not in r.tail(_TAIL):
            raise _Bad("truncated: no PNG end chunk")
        kinds.append("data after the PNG end chunk")
    return width, height


def _check_bmp(r: _Reader, kinds: List[str]) -> Tuple[int, int]:
    head = r.read(0, 30)
    if len(head) < 26:
        raise _Bad("truncated: the file ends inside the BMP header")
    (offset,) = struct.unpack_from("<I", head, 10)
    (dib,) = struct.unpack_from("<I", head, 14)
    if dib == 12:
        width, height = struct.unpack_from("<HH", head, 18)
    else:
        width, height = struct.unpack_from("<ii", head, 18)
    height = abs(height)
    if width <= 0 or height == 0:
        raise _Bad(f"BMP declares a {width}x{height} image")
    if offset >= r.size:
        raise _Bad("truncated: the file ends before the BMP's pixels")
    return width, height


def _check_tiff(r: _Reader, kinds: List[str]) -> Tuple[int, int]:
    order = "<" if r.head[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", r.read(4, 4))
        (count,) = struct.unpack(order + "H", r.read(ifd, 2))
        entries = r.read(ifd + 2, 12 * count)
        size = {}
        for i in range(count):
            tag, kind, _ = struct.unpack_from(order + "HHI", entries, 12 * i)
            if tag in (256, 257):
                fmt = order + ("H" if kind == 3 else "I")
                size[tag] = struct.unpack_from(fmt, entries, 12 * i + 8)[0]
    except struct.error:
        raise _Bad("TIFF header does not parse (truncated?)") from None
    width, height = size.get(256, 0), size.get(257, 0)
    if width == 0 or height == 0:
        raise _Bad("TIFF header does not parse: no image size")
    return width, height


def _check_webp(r: _Reader, kinds: List[str]) -> Tuple[int, int]:
    (riff,) = struct.unpack_from("<I", r.head, 4)
    if riff + 8 > r.size:
        raise _Bad("truncated: the file is shorter than its WebP header says")
    chunk = r.read(12, 18)
    if chunk[:4] == b"VP8 " and len(chunk) >= 18:
        width, height = struct.unpack_from("<HH", chunk, 14)
        width, height = width & 0x3FFF, height & 0x3FFF
    elif chunk[:4] == b"VP8L" and len(chunk) >= 13:
        (bits,) = struct.unpack_from("<I", chunk, 9)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk[:4] == b"VP8X" and len(chunk) >= 18:
        width = int.from_bytes(chunk[12:15], "little") + 1
        height = int.from_bytes(chunk[15:18], "little") + 1
    else:
        raise _Bad("WebP header does not parse")
    if width == 0 or height == 0:
        raise _Bad(f"WebP declares a {width}x{height} image")
    return width, height


def _check_jpeg2000(r: _Reader, kinds: List[str]) -> Tuple[int, int]:
    return 0, 0


def _sniff(head: bytes) -> Tuple[str, object]:
    """The format of a file's first bytes and its checker (None: not an image DALI decodes)."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg", _check_jpeg
    if head[:8] == _PNG_SIGNATURE:
        return "png", _check_png
    if head[:2] == b"BM":
        return "bmp", _check_bmp
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff", _check_tiff
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp", _check_webp
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xffO\xffQ":
        return "jpeg2000", _check_jpeg2000
    return "", None


def _not_an_image(head: bytes) -> str:
    """Why bytes that are no image format DALI decodes are not an image, in words."""
    start = head[:512].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in start:
        return "not an image: an HTML page"
    if start.startswith((b"<?xml", b"<svg")):
        return "not an image DALI decodes: XML/SVG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF image: DALI does not decode GIF"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF/MP4 file: DALI does not decode it"
    if head[:4] == b"%PDF":
        return "not an image: a PDF document"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "not an image: text"
    return f"not an image DALI decodes (first bytes {head[:4].hex(' ')})"


def check_image_file(path, size: Optional[int] = None) -> FileCheck:
    """Check one image file at file-system speed, without decoding it: its size, its magic bytes, its header
    (the JPEG segments up to the scan, a PNG's IHDR, ...), its end (the JPEG end marker, a PNG's IEND chunk) and
    its pixel size.

    ``size`` (the file's size from a stat done before) saves a system call. Never raises: an unreadable file
    is "bad" with the reason. A "usable" or "unusual" file decodes in DALI as far as its header and end can
    tell; only decoding it proves it (``dali-cutmix scan --full``).
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO named .jpg must not block
    except OSError as e:
        return FileCheck(BAD, detail=f"cannot open: {e.strerror.lower() if e.strerror else e}")
    try:
        if size is None:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return FileCheck(BAD, detail="not a regular file")
            size = st.st_size
        if size == 0:
            return FileCheck(BAD, detail="empty file (0 bytes)")
        try:
            r = _Reader(fd, size)
        except OSError as e:
            return FileCheck(BAD, detail=f"cannot read: {e.strerror.lower() if e.strerror else e}")
        fmt, checker = _sniff(r.head)
        if checker is None:
            return FileCheck(BAD, detail=_not_an_image(r.head))
        kinds: List[str] = []
        try:
            width, height = checker(r, kinds)
        except _Bad as e:
            return FileCheck(BAD, fmt, str(e))
        except (struct.error, OSError) as e:
            return FileCheck(BAD, fmt, f"{fmt.upper()} header does not parse ({e})")
    finally:
        os.close(fd)
    suffix = os.path.splitext(path)[1]
    named = _FORMAT_OF_EXTENSION.get(suffix.lower())
    if named is not None and named != fmt:
        kinds.insert(0, f"{_FORMAT_NAMES[fmt]} named {suffix}")
    if width and height and min(width, height) < TINY_SIDE:
        kinds.append(f"tiny ({width}x{height})")
    return FileCheck(UNUSUAL if kinds else USABLE, fmt, ", ".join(kinds), width, height)


_FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tiff": "TIFF", "webp": "WebP",
                 "jpeg2000": "JPEG 2000"}
