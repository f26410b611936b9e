"""Pictures people upload: what a file is (read from its bytes, never from its name or the type a client claims),
how big it is, and the same picture without the metadata a phone writes into it (EXIF with the GPS position where
it was taken and the device, XMP, IPTC, comments). Pure functions over bytes, no decoding of pixels.

A JPEG keeps one thing of its EXIF block: the orientation, rebuilt as a minimal EXIF segment, because phones store
portrait photos rotated and rely on it to show them upright. PNG and WebP lose their text and EXIF/XMP chunks.
Formats that can carry script (SVG, HTML) are never accepted from users."""
import struct
import zlib

KINDS = {"jpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png"), "webp": ("webp", "image/webp")}
MAX_SIDE = 10_000  # pixels: a phone photo is ~4,000 × 3,000
MAX_PIXELS = 50_000_000  # a small file may still declare a huge canvas (a decompression bomb for every viewer)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}
WEBP_DROPPED = {b"EXIF", b"XMP "}
WEBP_EXIF_FLAG, WEBP_XMP_FLAG = 0x08, 0x04
# JPEG markers kept besides the image data: APP0 (JFIF), APP2 (ICC colour profile), APP14 (Adobe colour transform)
JPEG_KEPT_APP = {0xE0, 0xE2, 0xEE}
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
EXIF_ORIENTATION_TAG = 0x0112


class ImageRefused(ValueError):
    """Not a picture we take, with the sentence a person reads."""


def sniff(data):
    """"jpeg", "png", "webp" or None, from the first bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == PNG_SIGNATURE:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def clean(data):
    """(kind, width, height, bytes without metadata) of an uploaded picture; ImageRefused when it is not a whole
    JPEG, PNG or WebP of a sensible size."""
    kind = sniff(data)
    if kind is None:
        raise ImageRefused("only JPEG, PNG or WebP pictures can be uploaded")
    try:
        width, height, cleaned = {"jpeg": _jpeg, "png": _png, "webp": _webp}[kind](data)
    except (IndexError, struct.error):
        raise ImageRefused(f"this {kind.upper()} file is damaged or cut short") from None
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise ImageRefused(f"pictures may be at most {MAX_SIDE} pixels a side and {MAX_PIXELS // 1_000_000} "
                           f"megapixels; this one is {width} × {height}")
    return kind, width, height, cleaned


# -- JPEG: a sequence of marker segments up to the first scan, then entropy-coded data ----------------------------
def _jpeg(data):
    out, size, orientation = [b"\xff\xd8"], None, None
    i = 2
    while True:
        if data[i] != 0xFF:
            raise IndexError("not a marker")
        while data[i] == 0xFF:  # fill bytes may precede a marker
            i += 1
        marker = data[i]
        i += 1
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            out.append(bytes([0xFF, marker]))
            continue
        if marker == 0xD9:
            raise IndexError("no image data before the end")
        (length,) = struct.unpack(">H", data[i:i + 2])
        if length < 2 or i + length > len(data):
            raise IndexError("segment past the end")
        segment = data[i + 2:i + length]
        if marker == 0xDA:  # start of scan: the rest (scans, tables between them, EOI) is image data
            if size is None:
                raise IndexError("scan before the frame header")
            if orientation not in (None, 1):  # after JFIF's APP0, which must come first when present
                out.insert(2 if out[1:2] and out[1][:2] == b"\xff\xe0" else 1, _exif_orientation_segment(orientation))
            out.append(data[i - 2:])
            return size[0], size[1], b"".join(out)
        if marker in JPEG_SOF:
            height, width = struct.unpack(">HH", segment[1:5])
            size = (width, height)
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _read_orientation(segment[6:]) or orientation
        if marker in JPEG_KEPT_APP or not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            out.append(data[i - 2:i + length])
        i += length


def _read_orientation(tiff):
    """EXIF orientation (1-8) from a TIFF block, or None."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for n in range(count):
            tag, kind, _, value = struct.unpack(order + "HHIH", tiff[ifd + 2 + 12 * n:ifd + 12 + 12 * n])
            if tag == EXIF_ORIENTATION_TAG and kind == 3 and 1 <= value <= 8:
                return value
    except (KeyError, struct.error):
        return None
    return None


def _exif_orientation_segment(orientation):
    """An APP1 EXIF segment holding nothing but the orientation (little-endian TIFF, one IFD, one entry)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", EXIF_ORIENTATION_TAG, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


# -- PNG: signature, then chunks (length, type, data, CRC), IHDR first and IEND last -----------------------------
def _png(data):
    out, i, size = [PNG_SIGNATURE], 8, None
    while True:
        length, chunk_type = struct.unpack(">I4s", data[i:i + 8])
        end = i + 12 + length
        if end > len(data):
            raise IndexError("chunk past the end")
        body = data[i + 8:i + 8 + length]
        (crc,) = struct.unpack(">I", data[i + 8 + length:end])
        if zlib.crc32(chunk_type + body) != crc:
            raise IndexError("bad chunk checksum")
        if size is None:
            if chunk_type != b"IHDR":
                raise IndexError("IHDR is not first")
            size = struct.unpack(">II", body[:8])
        if chunk_type not in PNG_DROPPED:
            out.append(data[i:end])
        if chunk_type == b"IEND":
            return size[0], size[1], b"".join(out)
        i = end


# -- WebP: a RIFF container of chunks (FourCC, little-endian size, data padded to even) --------------------------
def _webp(data):
    (riff_size,) = struct.unpack("<I", data[4:8])
    if riff_size + 8 > len(data):
        raise IndexError("RIFF past the end")
    chunks, i, size = [], 12, None
    while i < riff_size + 8:
        fourcc, length = struct.unpack("<4sI", data[i:i + 8])
        body = data[i + 8:i + 8 + length]
        if len(body) != length:
            raise IndexError("chunk past the end")
        if fourcc == b"VP8X":
            body = bytes([body[0] & ~(WEBP_EXIF_FLAG | WEBP_XMP_FLAG) & 0xFF]) + body[1:]
            size = (int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1)
        elif fourcc == b"VP8 " and size is None:
            if body[3:6] != b"\x9d\x01\x2a":
                raise IndexError("bad VP8 start code")
            width, height = struct.unpack("<HH", body[6:10])
            size = (width & 0x3FFF, height & 0x3FFF)
        elif fourcc == b"VP8L" and size is None:
            if body[0] != 0x2F:
                raise IndexError("bad VP8L signature")
            (bits,) = struct.unpack("<I", body[1:5])
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        if fourcc not in WEBP_DROPPED:
            chunks.append(struct.pack("<4sI", fourcc, length) + body + (b"\x00" if length % 2 else b""))
        i += 8 + length + (length % 2)
    if size is None:
        raise IndexError("no image chunk")
    payload = b"WEBP" + b"".join(chunks)
    return size[0], size[1], b"RIFF" + struct.pack("<I", len(payload)) + payload
