"""The structural JPEG check against OpenCV's verdict on thousands of damaged pictures."""
import os

import bson
import cv2
import numpy as np
import pytest

from data.jpeg import BAD_FRAME, CORRUPT_HEADER, EMPTY, NOT_JPEG, OK, TRUNCATED, jpeg_problems, picture_problem
from helpers import REAL_TRAIN_EXAMPLE, jpeg_bytes


def opencv_decodes(picture):
    try:
        return cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR) is not None
    except cv2.error:                     # an empty buffer fails an assertion
        return False


def scan_start(picture):
    """Where the entropy-coded data of an intact JPEG starts (after the SOS header)."""
    pos = 2
    while picture[pos + 1] != 0xDA:
        pos += 2 + int.from_bytes(picture[pos + 2:pos + 4], "big")
    return pos + 2 + int.from_bytes(picture[pos + 2:pos + 4], "big")


@pytest.fixture(scope="module")
def pictures():
    """The official sample's 110 pictures when available, and synthetic ones (OpenCV's encoder)."""
    found = [jpeg_bytes(seed) for seed in range(40)]
    if os.path.exists(REAL_TRAIN_EXAMPLE):
        with open(REAL_TRAIN_EXAMPLE, "rb") as f:
            found += [img["picture"] for doc in bson.decode_file_iter(f) for img in doc["imgs"]]
    return found


def check_all(pictures):
    """Codes of `pictures` checked together in one buffer (with a byte before each, so that no
    picture starts at 0); each also checked on its own must give the same code."""
    lengths = [len(p) for p in pictures]
    starts = np.cumsum([1] + [n + 1 for n in lengths[:-1]])
    codes = jpeg_problems(b"".join(b"\x00" + p for p in pictures), starts, lengths)
    for picture, code in zip(pictures[::25], codes[::25]):
        assert int(jpeg_problems(picture, [0], [len(picture)])[0]) == code
    return codes


def damaged(pictures, kind, n=600, seed=0):
    rng = np.random.RandomState(seed)
    out = []
    for k in rng.randint(len(pictures), size=n):
        picture = bytearray(pictures[k])
        header = scan_start(picture)
        if kind == "random bytes":
            picture = bytearray(rng.randint(0, 256, rng.randint(1, 12_000), dtype=np.uint8).tobytes())
        elif kind == "truncated":
            picture = picture[:rng.randint(1, len(picture) - 1)]
        elif kind == "header byte":
            picture[rng.randint(2, header)] = rng.randint(256)
        elif kind == "scan byte":
            picture[rng.randint(header, len(picture) - 2)] = rng.randint(256)
        out.append(bytes(picture))
    return out


def test_intact_pictures_pass(pictures):
    assert (check_all(pictures) == OK).all()
    assert picture_problem(pictures[0]) is None


@pytest.mark.parametrize("kind", ["random bytes", "truncated"])
def test_random_bytes_and_every_truncation_are_caught(pictures, kind):
    bad = damaged(pictures, kind)
    codes = check_all(bad)
    assert not any(opencv_decodes(p) for p in bad[:100])
    assert (codes != OK).all()
    # (a picture cut to its first 1-2 bytes has no JPEG signature left)
    assert set(codes.tolist()) <= ({NOT_JPEG} if kind == "random bytes" else {TRUNCATED, CORRUPT_HEADER, BAD_FRAME,
                                                                             NOT_JPEG})


def test_an_empty_picture_is_caught_not_a_crash():
    assert jpeg_problems(b"", [0], [0]).tolist() == [EMPTY]
    assert picture_problem(b"") == "is not a decodable JPEG (0 bytes): empty picture"
    assert jpeg_problems(b"\xff\xd8\xff" + b"abc", [0, 3, 6], [0, 3, 0]).tolist() == [EMPTY, NOT_JPEG, EMPTY]


def test_damaged_headers_opencv_cannot_decode_are_mostly_caught(pictures):
    """Single bytes changed in the header: what OpenCV cannot decode is caught, except changed
    Huffman code values (measured: 83-85% of the undecodable ones caught); scan bytes changed
    leave a picture OpenCV decodes (with artefacts), which passes."""
    bad = damaged(pictures, "header byte", n=1000)
    codes = check_all(bad)
    undecodable = np.array([not opencv_decodes(p) for p in bad])
    caught = (codes != OK) & undecodable
    assert undecodable.sum() >= 100 and caught.sum() >= 0.75 * undecodable.sum()
    assert ((codes != OK) & ~undecodable).sum() <= 0.05 * len(bad)      # damaged, yet decodable: few
    scan = damaged(pictures, "scan byte", n=300)
    assert all(opencv_decodes(p) for p in scan[:100]) and (check_all(scan) == OK).all()


@pytest.mark.parametrize("damage, code", [
    (lambda p, sof: p[:sof + 5] + b"\x00\x00" + p[sof + 7:], BAD_FRAME),           # height 0
    (lambda p, sof: p[:sof + 4] + b"\x0c" + p[sof + 5:], BAD_FRAME),               # 12-bit samples
    (lambda p, sof: p[:sof + 1] + b"\xc3" + p[sof + 2:], BAD_FRAME),               # lossless: unsupported
    (lambda p, sof: p[:sof + 2] + b"\x7f\xff" + p[sof + 4:], CORRUPT_HEADER),      # segment past the end
    (lambda p, sof: p[:sof] + b"\x00" + p[sof + 1:], CORRUPT_HEADER),              # no marker
])
def test_broken_frame_headers_are_caught_like_opencv(pictures, damage, code):
    picture = pictures[0]
    sof = picture.index(b"\xff\xc0")
    bad = damage(picture, sof)
    assert not opencv_decodes(bad)
    assert jpeg_problems(bad, [0], [len(bad)]).tolist() == [code]


def test_padding_after_the_end_marker_is_tolerated(pictures):
    picture = pictures[0]
    padded = [picture + b"\x00" * 7, picture + b"\x00" * 40]
    assert all(opencv_decodes(p) for p in padded)
    assert check_all(padded).tolist() == [OK, TRUNCATED]      # the marker must lie in the last 32 bytes


def segments(picture):
    """[(marker, bytes of the whole segment)] up to the scan, and the rest (scan and end marker)."""
    pos, out = 2, []
    while picture[pos + 1] != 0xDA:
        stop = pos + 2 + int.from_bytes(picture[pos + 2:pos + 4], "big")
        out.append((picture[pos + 1], picture[pos:stop]))
        pos = stop
    return out, picture[pos:]


def test_tables_merged_into_one_segment_pass(pictures):
    """Encoders such as Photoshop's write every Huffman (and quantization) table in one segment."""
    parts, rest = segments(pictures[0])
    merged = b"\xff\xd8"
    for marker in (0xE0, 0xDB, 0xC0, 0xC4):
        bodies = [segment[4:] for m, segment in parts if m == marker]
        body = b"".join(bodies) if marker in (0xDB, 0xC4) else bodies[0]
        merged += bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body
    merged += rest
    assert sum(m == 0xC4 for m, _ in parts) == 4 and opencv_decodes(merged)
    assert jpeg_problems(merged, [0], [len(merged)]).tolist() == [OK]


@pytest.mark.parametrize("params, colour", [
    ([cv2.IMWRITE_JPEG_PROGRESSIVE, 1], True), ([cv2.IMWRITE_JPEG_OPTIMIZE, 1], True),
    ([cv2.IMWRITE_JPEG_RST_INTERVAL, 4], True), ([cv2.IMWRITE_JPEG_QUALITY, 100], True), ([], False),
])
def test_other_kinds_of_jpeg_pass(params, colour):
    """Progressive, optimised Huffman tables, restart markers, 4:4:4 sampling, grey."""
    image = np.random.RandomState(0).randint(0, 256, (90, 120, 3) if colour else (90, 120), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, params)
    picture = encoded.tobytes()
    assert ok and opencv_decodes(picture)
    assert jpeg_problems(picture, [0], [len(picture)]).tolist() == [OK]
