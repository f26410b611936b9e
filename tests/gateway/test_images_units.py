"""Uploaded pictures without I/O: the type comes from the bytes, the size from the headers, and what a phone writes
into a photo (GPS position, device, comments) never reaches anyone else (gateway/images.py)."""
import re
import struct
import zlib

import pytest

from contracts.api.fields import LOCAL_IMAGE_PATTERN
from gateway import images
from gateway.routes.media import upload_name


# -- small but structurally whole files ------------------------------------------------------------------------
def segment(marker, body):
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def exif_block(orientation=6):
    """A little-endian TIFF with the orientation, the camera's make and a GPS IFD pointer (as phones write)."""
    entries = [(0x0112, 3, 1, struct.pack("<HH", orientation, 0)), (0x010F, 2, 4, b"Pho\x00"),
               (0x8825, 4, 1, struct.pack("<I", 0x40))]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", t, k, n) + v for t, k, n, v in entries)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"GPS 30.27N 120.15E"


def a_jpeg(width=4000, height=3000, orientation=6):
    return (b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            + segment(0xE1, exif_block(orientation)) + segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>")
            + segment(0xED, b"Photoshop 3.0\x00IPTC city Hangzhou") + segment(0xE2, b"ICC_PROFILE\x00\x01\x01colour")
            + segment(0xFE, b"taken at home") + segment(0xDB, b"\x00" + bytes(64))
            + segment(0xC0, b"\x08" + struct.pack(">HH", height, width) + b"\x01\x01\x11\x00")
            + segment(0xC4, b"\x00" + bytes(16) + b"\x00") + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
            + b"\x12\x34\xff\x00\x56" + b"\xff\xd9")


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def a_png(width=640, height=480):
    return (images.PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", b"Location\x00Hangzhou West Lake") + chunk(b"eXIf", exif_block()[6:])
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


def riff(*chunks):
    body = b"WEBP" + b"".join(struct.pack("<4sI", k, len(v)) + v + (b"\x00" if len(v) % 2 else b"") for k, v in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def a_webp(width=800, height=600):
    vp8x = bytes([0x08 | 0x04 | 0x10]) + b"\x00\x00\x00" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")
    vp8 = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(8)
    return riff((b"VP8X", vp8x), (b"VP8 ", vp8), (b"EXIF", exif_block()[6:]), (b"XMP ", b"<x:xmpmeta>GPS</x:xmpmeta>"))


def jpeg_markers(data):
    """The markers of a JPEG up to its first scan."""
    found, i = [], 2
    while True:
        marker = data[i + 1]
        found.append(marker)
        if marker == 0xDA:
            return found
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]


# -- JPEG --------------------------------------------------------------------------------------------------------
def test_a_phone_photo_loses_its_location_device_and_comments_but_keeps_its_orientation_and_colours():
    kind, width, height, cleaned = images.clean(a_jpeg(orientation=6))
    assert (kind, width, height) == ("jpeg", 4000, 3000)
    for secret in (b"GPS 30.27N", b"Pho\x00", b"xmpmeta", b"Hangzhou", b"taken at home"):
        assert secret not in cleaned
    # JFIF first, then a fresh EXIF block holding nothing but the orientation, the colour profile kept
    assert jpeg_markers(cleaned) == [0xE0, 0xE1, 0xE2, 0xDB, 0xC0, 0xC4, 0xDA]
    exif = cleaned[cleaned.index(b"Exif\x00\x00") + 6:]
    assert images._read_orientation(exif) == 6
    # the image data from the scan on is untouched
    assert cleaned.endswith(b"\x12\x34\xff\x00\x56\xff\xd9")


def test_an_upright_photo_gets_no_exif_block_at_all():
    _, _, _, cleaned = images.clean(a_jpeg(orientation=1))
    assert b"Exif" not in cleaned and jpeg_markers(cleaned)[:2] == [0xE0, 0xE2]


# -- PNG and WebP ------------------------------------------------------------------------------------------------
def test_a_png_loses_its_text_and_exif_chunks_and_stays_whole():
    kind, width, height, cleaned = images.clean(a_png())
    assert (kind, width, height) == ("png", 640, 480)
    assert b"Hangzhou" not in cleaned and b"eXIf" not in cleaned and b"GPS" not in cleaned
    # still a PNG whose every chunk checks (images.clean reads it again without complaint)
    assert images.clean(cleaned)[3] == cleaned and cleaned.endswith(chunk(b"IEND", b""))


def test_a_webp_loses_its_exif_and_xmp_chunks_and_their_flags_and_its_riff_size_is_right():
    kind, width, height, cleaned = images.clean(a_webp())
    assert (kind, width, height) == ("webp", 800, 600)
    assert b"EXIF" not in cleaned and b"XMP " not in cleaned and b"GPS" not in cleaned
    assert struct.unpack("<I", cleaned[4:8])[0] == len(cleaned) - 8
    flags = cleaned[cleaned.index(b"VP8X") + 8]
    assert flags & (images.WEBP_EXIF_FLAG | images.WEBP_XMP_FLAG) == 0 and flags & 0x10  # alpha flag kept


def test_a_lossless_webp_reads_its_size():
    bits = (1023 - 1) | ((767 - 1) << 14)
    assert images.clean(riff((b"VP8L", b"\x2f" + struct.pack("<I", bits) + bytes(4))))[1:3] == (1023, 767)


# -- refusals ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', b"<html><script>alert(1)</script>",
    b"GIF89a\x01\x00\x01\x00", b"%PDF-1.7", b"\x00" * 64,
])
def test_anything_but_jpeg_png_or_webp_is_refused_whatever_it_claims_to_be(data):
    with pytest.raises(images.ImageRefused, match="only JPEG, PNG or WebP"):
        images.clean(data)


@pytest.mark.parametrize("make", [lambda: a_jpeg()[:200], lambda: a_png()[:60], lambda: a_webp()[:30],
                                  lambda: a_png().replace(b"Hangzhou", b"Shanghai")])  # a chunk whose CRC fails
def test_a_damaged_or_cut_short_file_is_refused(make):
    with pytest.raises(images.ImageRefused, match="damaged or cut short"):
        images.clean(make())


@pytest.mark.parametrize("data", [a_png(20_000, 10), a_jpeg(9_000, 9_000), a_webp(16_000, 16_000)])
def test_a_canvas_too_big_to_show_safely_is_refused_however_small_the_file(data):
    with pytest.raises(images.ImageRefused, match="at most 10000 pixels a side and 50 megapixels"):
        images.clean(data)


def test_upload_names_are_what_image_fields_accept_and_differ_per_uploader():
    data = a_png()
    first, other = upload_name("usr_a", data, "png"), upload_name("usr_b", data, "png")
    assert re.fullmatch(LOCAL_IMAGE_PATTERN, f"/media/{first}") and first != other
    assert upload_name("usr_a", data, "png") == first
