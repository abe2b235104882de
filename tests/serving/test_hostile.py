"""Hostile input against a real server: odd and broken images, bombs, malformed requests, slow and
greedy clients. Every answer is JSON with a stable code (never a 500 or a traceback), one bad image
never fails a batch, and the server keeps answering afterwards."""

from __future__ import annotations

import base64
import io
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from factories import jpeg_bytes
from PIL import Image
from serverutil import Server, copy_bundle, start_server, stop_server

MAX_REQUEST = 4 * 2**20
MAX_INFLIGHT = 6 * 2**20


@pytest.fixture(scope="module")
def tight_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No keys (loopback); small body limits and a 1 s body idle timeout so the limits are cheap to hit."""
    tmp = tmp_path_factory.mktemp("hostile")
    s = start_server(
        copy_bundle(tiny_bundle_dir, tmp / "bundle"),
        tmp / "serve.log",
        env={
            "AUTHLENS_MAX_REQUEST_BYTES": str(MAX_REQUEST),
            "AUTHLENS_MAX_FILE_BYTES": str(2 * 2**20),
            "AUTHLENS_MAX_INFLIGHT_BYTES": str(MAX_INFLIGHT),
            "AUTHLENS_BODY_IDLE_TIMEOUT_S": "1",
        },
    )
    yield s
    stop_server(s)


# images ------------------------------------------------------------------------------------------
def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is patched to declare ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _png16(channels: int, seed: int = 0) -> bytes:
    """A 16-bit PNG (grey or RGB) written by hand: Pillow cannot save 16-bit RGB."""
    h, w = 60, 50
    arr = np.random.default_rng(seed).integers(0, 65535, (h, w, channels), dtype=np.uint16)
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    color_type = {1: 0, 3: 2}[channels]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _heic(img: Image.Image) -> bytes:
    import pillow_heif

    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=50)
    return buf.getvalue()


def _heic_declaring(width: int, height: int) -> bytes:
    data = bytearray(_heic(_noise(96, 80)))
    at = data.find(b"ispe")
    data[at + 8 : at + 16] = struct.pack(">II", width, height)
    return bytes(data)


def _webp_animated(canvas: tuple[int, int] | None = None) -> bytes:
    frames = [_noise(96, 80, seed) for seed in range(3)]
    data = bytearray(_encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100))
    if canvas is not None:  # VP8X holds canvas width-1 and height-1 as 24-bit little-endian
        at = data.find(b"VP8X")
        data[at + 12 : at + 15] = (canvas[0] - 1).to_bytes(3, "little")
        data[at + 15 : at + 18] = (canvas[1] - 1).to_bytes(3, "little")
    return bytes(data)


def _jpeg_raw_orientation(kind: int, count: int, value: bytes) -> bytes:
    """A 96x64 JPEG whose EXIF orientation entry has an arbitrary TIFF type (text, bytes ...)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, kind, count) + value + struct.pack("<I", 0)
    exif = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    return _encode(_noise(96, 64), "JPEG", exif=exif)


def _heic_broken_mdat() -> bytes:
    """8 bytes pushed in before the mdat box: pillow-heif raised EOFError here (was a 500)."""
    data = _heic(_noise(96, 80))
    at = data.find(b"mdat") - 4
    return data[:at] + b"\0" * 8 + data[at:]


# name -> (bytes, expected status, expected code or (width, height))
CASES: dict[str, tuple[bytes, int, str | tuple[int, int]]] = {
    "png-zero-size": (_png_declaring(0, 0), 422, "corrupt_image"),
    "png-bomb": (_png_declaring(20000, 20000), 422, "image_too_large"),
    "webp-bomb": (_webp_animated(canvas=(16383, 16383)), 422, "image_too_large"),
    "heic-bomb": (_heic_declaring(20000, 20000), 422, "image_too_large"),
    "heic-truncated": (_heic(_noise(96, 80))[:600], 422, "corrupt_image"),
    "heic-broken-mdat": (_heic_broken_mdat(), 422, "corrupt_image"),
    "jpeg-truncated": (jpeg_bytes(200, 100)[:400], 422, "corrupt_image"),
    "png-1x1": (_encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), 200, (1, 1)),
    "jpeg-1x1": (_encode(Image.new("RGB", (1, 1), (9, 9, 9)), "JPEG"), 200, (1, 1)),
    "jpeg-1x10000": (_encode(_noise(1, 10000), "JPEG"), 200, (1, 10000)),
    "png-10000x1": (_encode(_noise(10000, 1), "PNG"), 200, (10000, 1)),
    "webp-animated": (_webp_animated(), 200, (96, 80)),
    "jpeg-cmyk": (_encode(_noise(120, 90).convert("CMYK"), "JPEG"), 200, (120, 90)),
    "png-16bit-grey": (_png16(1), 200, (50, 60)),
    "png-16bit-rgb": (_png16(3), 200, (50, 60)),
    # a text orientation is ignored by Pillow's transpose: the size must not be reported swapped
    "jpeg-exif-orientation-text": (_jpeg_raw_orientation(2, 2, b"6\0\0\0"), 200, (96, 64)),
    # an UNDEFINED-typed orientation used to refuse the photo as corrupt_image
    "jpeg-exif-orientation-bytes": (_jpeg_raw_orientation(7, 4, b"\x06\0\0\0"), 200, (96, 64)),
    "jpeg-exif-rotated-draft": (jpeg_bytes(1200, 600, exif_orientation=6), 200, (600, 1200)),
}


def _check_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    assert body["request_id"] and "Traceback" not in r.text


def _check_image(im: dict, size: tuple[int, int]) -> None:
    assert (im["width"], im["height"]) == size
    if im["verdict"] == "inconclusive":
        assert im["inconclusive_reasons"], im  # always says why
    if min(size) < 32:  # the tiny bundle's min_image_side
        assert "image_too_small" in im["inconclusive_reasons"] and not im["usable"]
    for f in im["flagged_features"]:
        b = f["box"]
        assert 0 <= b["x0"] < b["x1"] <= size[0] and 0 <= b["y0"] < b["y1"] <= size[1], f


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_image_gets_a_result_or_its_code(tight_server: Server, name: str) -> None:
    data, status, expected = CASES[name]
    with tight_server.client() as c:
        r = c.post("/v1/score", files=[("files", (f"{name}.jpg", data, "image/jpeg"))])
    if status != 200:
        assert isinstance(expected, str)
        _check_error(r, status, expected)
        return
    assert r.status_code == 200, r.text
    assert isinstance(expected, tuple)
    _check_image(r.json()["images"][0], expected)
    item = r.json()["item"]
    assert item["verdict"] != "inconclusive" or item["inconclusive_reasons"]


def test_one_batch_of_every_hostile_image(tight_server: Server) -> None:
    """Multipart and JSON: each image gets its own result or error code, and the call succeeds."""
    names = list(CASES)
    with tight_server.client() as c:
        multipart = c.post("/v1/score/batch", files=[("files", (n, CASES[n][0])) for n in names])
        garbage = {
            "urlsafe": base64.urlsafe_b64encode(b"\xfb\xff\xfe" * 20).decode(),
            "data-uri": "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(64, 64)).decode(),
            "whitespace": "AAAA AAAA",
            "non-ascii": "ÄÖÜ=",
        }
        images = [{"id": n, "data": base64.b64encode(CASES[n][0]).decode()} for n in names]
        images += [{"id": k, "data": v} for k, v in garbage.items()]
        json_call = c.post("/v1/score/batch", json={"images": images})
    for r in (multipart, json_call):
        assert r.status_code == 200, r.text
        results = {x["id"]: x for x in r.json()["results"]}
        for n in names:
            _, status, expected = CASES[n]
            if status == 200:
                assert results[n]["status"] == "ok", results[n]
                _check_image(results[n]["result"], expected)  # type: ignore[arg-type]
            else:
                assert results[n]["status"] == "error" and results[n]["error"]["code"] == expected
    json_results = {x["id"]: x for x in json_call.json()["results"]}
    for k in garbage:
        assert json_results[k]["error"]["code"] == "invalid_base64", json_results[k]


# requests ----------------------------------------------------------------------------------------
B = "XyZ"
MALFORMED = {
    "no-closing-boundary": f'--{B}\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\nabc',
    "part-without-name": f'--{B}\r\nContent-Disposition: form-data; filename="a"\r\n\r\nabc\r\n--{B}--\r\n',
    "wrong-boundary": '--other\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\nx\r\n--other--\r\n',
    "text-field-as-files": f'--{B}\r\nContent-Disposition: form-data; name="files"\r\n\r\nabc\r\n--{B}--\r\n',
    "huge-part-header": f'--{B}\r\nContent-Disposition: form-data; name="files"; filename="{"a" * 200_000}"\r\n\r\nx\r\n--{B}--\r\n',
    "huge-text-field": f'--{B}\r\nContent-Disposition: form-data; name="ids"\r\n\r\n{"a" * 2_000_000}\r\n--{B}--\r\n',
}


@pytest.mark.parametrize("route", ["/v1/score", "/v1/score/batch"])
def test_malformed_requests_get_json_errors(tight_server: Server, route: str) -> None:
    with tight_server.client() as c:
        answers = [
            c.post(
                route, content=body.encode(), headers={"content-type": f"multipart/form-data; boundary={B}"}
            )
            for body in MALFORMED.values()
        ]
        for ctype in ("multipart/form-data", "text/plain", "application/octet-stream", "image/jpeg"):
            answers.append(c.post(route, content=b"\xff\xd8\xff", headers={"content-type": ctype}))
        answers.append(c.post(route, files=[("files", (f"{i}.jpg", b"x")) for i in range(1500)]))
    for r in answers:
        assert r.status_code in (400, 413, 415, 422), (r.status_code, r.text)
        assert r.json()["error"]["code"] and "Traceback" not in r.text


def _raw(port: int, head: bytes, timeout: float = 10) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(head)
    return s


def _answer(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _post_head(length: int | None, route: str = "/v1/score/batch") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {route} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()


def test_stalled_body_times_out_with_408(tight_server: Server) -> None:
    port = int(tight_server.url.rsplit(":", 1)[1])
    t = time.monotonic()
    with _raw(port, _post_head(1000) + b'{"images": [') as s:
        status, _headers, body = _answer(s)
    assert status == 408 and b'"request_timeout"' in body
    assert time.monotonic() - t < 8
    assert httpx.get(tight_server.url + "/healthz").status_code == 200


def test_bodies_in_flight_share_a_memory_budget(tight_server: Server) -> None:
    """A second large upload while the first holds the budget is refused before it sends a byte;
    the budget comes back when the first ends (here: by stalling into a 408)."""
    port = int(tight_server.url.rsplit(":", 1)[1])
    big = MAX_REQUEST - 1000
    with _raw(port, _post_head(big) + b"{") as holder:
        time.sleep(0.2)
        with _raw(port, _post_head(big)) as second:
            status, headers, body = _answer(second)
        assert status == 429 and b'"overloaded"' in body and int(headers["retry-after"]) >= 1
        assert _answer(holder)[0] == 408
    photo = base64.b64encode(jpeg_bytes(200, 150)).decode()
    with tight_server.client() as c:
        ok = c.post("/v1/score/batch", json={"images": [{"id": "a", "data": photo}]})
        metrics = c.get("/metrics").text
    assert ok.status_code == 200, ok.text
    assert 'authlens_rejected_total{reason="inflight_bytes"}' in metrics
    assert 'authlens_rejected_total{reason="request_timeout"}' in metrics
    # refused before routing, still counted under the route's template
    assert 'authlens_requests_total{method="POST",route="/v1/score/batch",status="429"}' in metrics


def test_chunked_body_over_the_limit_is_413(tight_server: Server) -> None:
    port = int(tight_server.url.rsplit(":", 1)[1])
    chunk = b"A" * 2**20
    with _raw(port, _post_head(None)) as s:
        try:
            for _ in range(MAX_REQUEST // len(chunk) + 2):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        status, _, body = _answer(s)
    assert status == 413 and b'"request_too_large"' in body


def test_huge_headers_are_refused_and_the_server_lives(tight_server: Server) -> None:
    port = int(tight_server.url.rsplit(":", 1)[1])
    with _raw(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n") as s:
        try:
            answer = s.recv(200)
        except ConnectionResetError:
            answer = b""
    assert not answer or answer.startswith(b"HTTP/1.1 4")
    assert httpx.get(tight_server.url + "/healthz").status_code == 200


def test_many_tiny_concurrent_requests(tight_server: Server) -> None:
    tiny = _encode(Image.new("RGB", (1, 1)), "PNG")

    def call(_: int) -> int:
        with httpx.Client(base_url=tight_server.url, timeout=60) as c:
            return c.post("/v1/score", files=[("files", ("t.png", tiny))]).status_code

    with ThreadPoolExecutor(48) as pool:
        codes = list(pool.map(call, range(192)))
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) >= len(codes) // 2
    with tight_server.client() as c:
        metrics = c.get("/metrics").text
    assert "authlens_queue_depth 0.0" in metrics
    assert "authlens_out_of_distribution_rate" in metrics
