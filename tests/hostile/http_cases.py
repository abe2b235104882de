"""The HTTP half of the hostile corpus: requests a careless or hostile client sends, built at test
time, each with the answer a server must give and how long it may take.

``cases()`` returns :class:`HttpCase` objects; ``image_cases()`` wraps every file of
:mod:`hostile.images` as a ``POST /v1/score`` upload. ``tests/serving/test_hostile_corpus.py``
runs all of them against real servers and also bounds the server's peak RSS per case.

Everything is sent over raw sockets (:func:`exchange`), so a case can say exactly what reaches
the server: invented methods, lying lengths, slow or endless bodies, smuggling headers.

Groups: ``method``, ``body``, ``multipart``, ``json``, ``auth``, ``admin``, ``headers``,
``image`` (the decoding corpus over HTTP).
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hostile.images import Case as ImageCase
from hostile.images import Decoded
from hostile.images import cases as image_file_cases

BOUNDARY = "hostileBoundary"


@dataclass(frozen=True)
class Target:
    """Where and how to reach the servers under test.

    Attributes:
        open_port: A keyless loopback server (admin routes open to loopback, as in the issue).
        keyed_port: A server with API and admin keys.
        api_key: The keyed server's API key.
        admin_key: The keyed server's admin key.
        max_request_bytes: The servers' body limit.
        max_file_bytes: The servers' file limit.
    """

    open_port: int
    keyed_port: int
    api_key: str
    admin_key: str
    max_request_bytes: int
    max_file_bytes: int


@dataclass
class Answer:
    """What came back: status (0 when the server closed without answering), headers, body, time."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def code(self) -> str | None:
        try:
            return json.loads(self.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class HttpCase:
    """One hostile request and the answer it must get.

    Attributes:
        name: Unique name.
        group: See the module docstring.
        what: What it tries, in words.
        send: Sends it and returns the answer.
        status: Accepted statuses.
        code: The stable error code the JSON answer must carry (``None``: no JSON expected, e.g.
            the HTTP parser's own refusal or a success).
        max_seconds: The answer must come within this.
        check: Further checks on the answer (raises AssertionError).
    """

    name: str
    group: str
    what: str
    send: Callable[[Target], Answer]
    status: tuple[int, ...]
    code: str | None
    max_seconds: float = 5.0
    check: Callable[[Answer], None] | None = field(default=None, compare=False)


# wire helpers ------------------------------------------------------------------------------------
def _parse(data: bytes, seconds: float) -> Answer:
    if b"\r\n\r\n" not in data:
        return Answer(0, {}, data, seconds)
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Answer(0, {}, data, seconds)
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Answer(status, headers, body, seconds)


def exchange(
    port: int,
    head: bytes,
    body: bytes | None = b"",
    *,
    drip: tuple[int, float] | None = None,
    chunks: list[bytes] | None = None,
    timeout: float = 30.0,
) -> Answer:
    """Send ``head`` then ``body`` (all at once, or ``drip=(bytes, seconds)`` at a time, or as
    ``chunks``), read until the server closes, and time it from the first byte sent.

    The server may answer and close before everything was sent; sending then stops quietly.
    """
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(head)
            if chunks is not None:
                for c in chunks:
                    s.sendall(c)
            elif drip is not None and body:
                size, pause = drip
                s.settimeout(pause)
                for i in range(0, len(body), size):
                    s.sendall(body[i : i + size])
                    try:  # an answer already? stop sending
                        first = s.recv(65536, socket.MSG_PEEK)
                        if first:
                            break
                    except TimeoutError:
                        pass
                s.settimeout(timeout)
            elif body:
                s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return _parse(data, time.monotonic() - t)


def request_head(
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    length: int | None = None,
    host: str = "127.0.0.1",
) -> bytes:
    """An HTTP/1.1 request head with ``Connection: close``."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(
    port: int,
    path: str,
    body: bytes,
    ctype: str,
    headers: dict[str, str] | None = None,
    **kwargs: object,
) -> Answer:
    head = request_head("POST", path, {"Content-Type": ctype, **(headers or {})}, length=len(body))
    return exchange(port, head, body, **kwargs)  # type: ignore[arg-type]


def multipart(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """``(field name, file name or None, content)`` parts as a multipart body."""
    out = b""
    for name, filename, content in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _tiny_jpeg() -> bytes:
    from factories import jpeg_bytes

    return jpeg_bytes(64, 48)


def _json_batch(images: list[dict[str, str]]) -> bytes:
    return json.dumps({"images": images}).encode()


# cases ------------------------------------------------------------------------------------------
def _method_cases() -> list[HttpCase]:
    def raw(method: str, path: str) -> Callable[[Target], Answer]:
        return lambda t: exchange(t.open_port, request_head(method, path))

    return [
        HttpCase("invented-method", "method", "BREW /v1/score", raw("BREW", "/v1/score"), (405,), "method_not_allowed"),
        HttpCase("invented-method-unknown-path", "method", "FOO on a path that does not exist",
                 raw("FOO", "/nowhere/x"), (404,), "not_found"),
        HttpCase("long-invented-method", "method", "a 200-character method name",
                 raw("X" * 200, "/v1/score"), (405,), "method_not_allowed"),
        HttpCase("options", "method", "OPTIONS on the scoring route", raw("OPTIONS", "/v1/score"), (405,),
                 "method_not_allowed"),
        HttpCase("trace", "method", "TRACE on the root", raw("TRACE", "/"), (405,), "method_not_allowed"),
        HttpCase("get-on-post-route", "method", "GET /v1/score/batch", raw("GET", "/v1/score/batch"), (405,),
                 "method_not_allowed"),
    ]  # fmt: skip


def _body_cases() -> list[HttpCase]:
    def huge_declared(t: Target) -> Answer:
        return exchange(
            t.open_port, request_head("POST", "/v1/score", {"Content-Type": MULTIPART}, length=10**12)
        )

    def declared_never_sent(t: Target) -> Answer:
        return exchange(
            t.open_port,
            request_head("POST", "/v1/score/batch", {"Content-Type": "application/json"}, length=100_000),
        )

    def slow_body(t: Target) -> Answer:
        body = _json_batch([{"id": "a", "data": "A" * 4000}])
        head = request_head("POST", "/v1/score/batch", {"Content-Type": "application/json"}, length=len(body))
        return exchange(t.open_port, head, body, drip=(8, 0.1))

    def chunked_over(t: Target) -> Answer:
        chunk = b"A" * 2**20
        frames = [b"%x\r\n" % len(chunk) + chunk + b"\r\n"] * (t.max_request_bytes // len(chunk) + 2)
        head = request_head(
            "POST", "/v1/score/batch", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        )
        return exchange(t.open_port, head, chunks=frames)

    def smuggle(t: Target) -> Answer:
        head = request_head(
            "POST", "/v1/score", {"Content-Type": MULTIPART, "Transfer-Encoding": "chunked"}, length=5
        )
        return exchange(t.open_port, head, b"0\r\n\r\n")

    def bad_length(value: str) -> Callable[[Target], Answer]:
        return lambda t: exchange(
            t.open_port, request_head("POST", "/v1/score", {"Content-Length": value}), b"x"
        )

    def get_with_body(t: Target) -> Answer:
        return exchange(t.open_port, request_head("GET", "/healthz", length=5), b"hello")

    return [
        HttpCase("huge-declared-length", "body", "Content-Length of 1 TB", huge_declared, (413,), "request_too_large", 2),
        HttpCase("declared-never-sent", "body", "a 100 kB length, then nothing", declared_never_sent, (408,),
                 "request_timeout", 8),
        HttpCase("slow-body", "body", "4 kB sent 8 bytes every 0.1 s (80 B/s)", slow_body, (408,), "request_timeout", 8),
        HttpCase("chunked-over-limit", "body", "chunked upload past max_request_bytes", chunked_over, (413,),
                 "request_too_large", 15),
        HttpCase("length-and-chunked", "body", "Content-Length and Transfer-Encoding together (smuggling)", smuggle,
                 (400,), "bad_request"),
        HttpCase("length-not-a-number", "body", "Content-Length: abc", bad_length("abc"), (400,), None),
        HttpCase("length-negative", "body", "Content-Length: -5", bad_length("-5"), (400,), None),
        HttpCase("get-with-body", "body", "a GET carrying a body", get_with_body, (200,), None),
    ]  # fmt: skip


def _big_in_batch(a: Answer) -> None:
    results = {r["id"]: r for r in json.loads(a.body)["results"]}
    assert results["ok.jpg"]["status"] == "ok" and results["big.jpg"]["error"]["code"] == "file_too_large", (
        results
    )


def _multipart_cases() -> list[HttpCase]:
    def send(
        route: str, body: bytes | Callable[[Target], bytes], ctype: str = MULTIPART
    ) -> Callable[[Target], Answer]:
        return lambda t: post(t.open_port, route, body(t) if callable(body) else body, ctype)

    jpg = _tiny_jpeg()
    b = BOUNDARY
    return [
        HttpCase("no-boundary", "multipart", "multipart without a boundary parameter",
                 send("/v1/score", multipart([("files", "a.jpg", jpg)]), "multipart/form-data"), (400,), "bad_request"),
        HttpCase("no-closing-boundary", "multipart", "a body that never closes its last part",
                 send("/v1/score", f'--{b}\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\nabc'
                      .encode()), (400, 422), None),
        HttpCase("part-without-name", "multipart", "a part with no name",
                 send("/v1/score", f'--{b}\r\nContent-Disposition: form-data; filename="a"\r\n\r\nabc\r\n--{b}--\r\n'
                      .encode()), (400,), "bad_request"),
        HttpCase("1500-files", "multipart", "1500 file parts to /v1/score",
                 send("/v1/score", multipart([("files", f"{i}.jpg", b"x") for i in range(1500)])), (422,),
                 "too_many_files"),
        HttpCase("1500-files-batch", "multipart", "1500 file parts to the batch route",
                 send("/v1/score/batch", multipart([("files", f"{i}.jpg", b"x") for i in range(1500)])), (422,),
                 "too_many_files"),
        HttpCase("5000-fields", "multipart", "5000 text fields",
                 send("/v1/score/batch", multipart([("ids", None, b"x")] * 5000 + [("files", "a.jpg", jpg)])), (400,),
                 "bad_request"),
        HttpCase("huge-text-field", "multipart", "a 2 MB text field",
                 send("/v1/score/batch", multipart([("ids", None, b"a" * 2_000_000), ("files", "a.jpg", jpg)])),
                 (400,), "bad_request"),
        HttpCase("huge-part-header", "multipart", "a 200 kB file name",
                 send("/v1/score", multipart([("files", "a" * 200_000, jpg)])), (400,), "bad_request"),
        HttpCase("file-over-limit", "multipart", "one file part past max_file_bytes",
                 send("/v1/score", lambda t: multipart([("files", "big.jpg", b"\xff\xd8" + b"\0" * (t.max_file_bytes + 10))])),
                 (413,), "file_too_large"),
        HttpCase("batch-file-over-limit", "multipart", "a batch with one file past max_file_bytes (its own error)",
                 send("/v1/score/batch", lambda t: multipart([("files", "ok.jpg", jpg),
                                                              ("files", "big.jpg", b"\xff\xd8" + b"\0" * (t.max_file_bytes + 10))])),
                 (200,), None, check=_big_in_batch),
        HttpCase("nine-files", "multipart", "9 photos for one item",
                 send("/v1/score", multipart([("files", f"{i}.jpg", jpg) for i in range(9)])), (422,), "too_many_files"),
        HttpCase("empty-file", "multipart", "a zero-byte photo",
                 send("/v1/score", multipart([("files", "e.jpg", b"")])), (422,), "empty_file"),
        HttpCase("files-as-text", "multipart", "`files` sent as a text field",
                 send("/v1/score", multipart([("files", None, b"abc")])), (422,), "invalid_request"),
        HttpCase("urlencoded", "multipart", "a form-urlencoded body to /v1/score",
                 send("/v1/score", b"files=abc", "application/x-www-form-urlencoded"), (415,), "unsupported_media_type"),
        HttpCase("long-id", "multipart", "a 1000-character client id",
                 send("/v1/score/batch", multipart([("files", "a.jpg", jpg), ("ids", None, b"i" * 1000)])), (422,),
                 "invalid_request"),
    ]  # fmt: skip


def _json_cases() -> list[HttpCase]:
    def send(body: bytes, ctype: str = "application/json") -> Callable[[Target], Answer]:
        return lambda t: post(t.open_port, "/v1/score/batch", body, ctype)

    ok = base64.b64encode(_tiny_jpeg()).decode()

    def garbage_check(a: Answer) -> None:
        results = json.loads(a.body)["results"]
        assert [r["error"]["code"] for r in results] == ["invalid_base64"] * 3, results

    return [
        HttpCase("deep-json", "json", "arrays nested 100 000 deep",
                 send(b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), (422,), "invalid_request"),
        HttpCase("million-entries", "json",
                 "1 000 000 tiny entries, 21 MB, with the API key (the 64-image limit is checked while reading)",
                 lambda t: post(t.keyed_port, "/v1/score/batch",
                                b'{"images": [' + b",".join([b'{"id":"a","data":""}'] * 1_000_000) + b"]}",
                                "application/json", {"X-API-Key": t.api_key}), (422,), "too_many_files", 4),
        HttpCase("duplicate-keys", "json", "an entry with `id` twice (I-JSON)",
                 send(b'{"images": [{"id": "a", "id": "b", "data": ""}]}'), (422,), "invalid_request"),
        HttpCase("nan", "json", "NaN as a value", send(b'{"images": [{"id": "a", "data": NaN}]}'), (422,),
                 "invalid_request"),
        HttpCase("lone-surrogate", "json", "an id holding a lone surrogate",
                 send(b'{"images": [{"id": "\\ud800", "data": ""}]}'), (422,), "invalid_request"),
        HttpCase("not-utf8", "json", "Latin-1 bytes", send(b'{"images": [{"id": "\xe9", "data": ""}]}'), (422,),
                 "invalid_request"),
        HttpCase("bom", "json", "a UTF-8 byte-order mark", send(b'\xef\xbb\xbf{"images": []}'), (422,),
                 "invalid_request"),
        HttpCase("top-level-array", "json", "an array instead of an object", send(b"[]"), (422,), "invalid_request"),
        HttpCase("unknown-key", "json", "a key besides `images`", send(b'{"images": [], "admin": true}'), (422,),
                 "invalid_request"),
        HttpCase("big-integer", "json", "an integer beyond 2**53",
                 send(b'{"images": [{"id": "a", "data": "", "n": 123456789012345678901}]}'), (422,), "invalid_request"),
        HttpCase("empty-body", "json", "an empty JSON body", send(b""), (422,), "invalid_request"),
        HttpCase("trailing-data", "json", "a second document after the first", send(b'{"images": []} {}'), (422,),
                 "invalid_request"),
        HttpCase("65-images", "json", "one image past the batch limit",
                 send(_json_batch([{"id": str(i), "data": ok} for i in range(65)])), (422,), "too_many_files"),
        HttpCase("base64-garbage", "json", "three images with invalid base64 (per-image errors)",
                 send(_json_batch([{"id": "u", "data": "-_-_"}, {"id": "s", "data": "AA AA"},
                                   {"id": "n", "data": "ÄÖ=="}])), (200,), None, check=garbage_check),
        HttpCase("text-plain-batch", "json", "a batch as text/plain", send(b'{"images": []}', "text/plain"), (415,),
                 "unsupported_media_type"),
    ]  # fmt: skip


def _auth_cases() -> list[HttpCase]:
    def no_key_declared(t: Target) -> Answer:
        head = request_head("POST", "/v1/score", {"Content-Type": MULTIPART}, length=50_000_000)
        return exchange(t.keyed_port, head, b"")  # the body is never sent: the answer must not wait for it

    def keyed(method: str, path: str, headers: dict[str, str]) -> Callable[[Target], Answer]:
        return lambda t: exchange(t.keyed_port, request_head(method, path, headers))

    return [
        HttpCase("no-key-50mb-declared", "auth", "no key, 50 MB declared, no body sent", no_key_declared, (401,),
                 "unauthorized", 2),
        HttpCase("wrong-key-batch", "auth", "a wrong X-API-Key on the batch route",
                 keyed("POST", "/v1/score/batch", {"X-API-Key": "wrong", "Content-Type": "application/json"}), (401,),
                 "unauthorized"),
        HttpCase("bearer-wrong", "auth", "a wrong bearer token",
                 keyed("POST", "/v1/score", {"Authorization": "Bearer nope"}), (401,), "unauthorized"),
        HttpCase("no-key-metrics", "auth", "/metrics without a key", keyed("GET", "/metrics", {}), (401,),
                 "unauthorized"),
        HttpCase("no-key-model", "auth", "/v1/model without a key", keyed("GET", "/v1/model", {}), (401,),
                 "unauthorized"),
        HttpCase("api-key-on-admin", "auth", "the API key on /v1/admin/reload",
                 lambda t: exchange(t.keyed_port, request_head("POST", "/v1/admin/reload",
                                                               {"X-API-Key": t.api_key})), (401,), "unauthorized"),
    ]  # fmt: skip


def _admin_cases() -> list[HttpCase]:
    def admin(headers: dict[str, str], host: str = "127.0.0.1") -> Callable[[Target], Answer]:
        return lambda t: exchange(
            t.open_port, request_head("POST", "/v1/admin/reload", headers, length=0, host=host)
        )

    return [
        HttpCase("cross-site-text-plain", "admin", "the issue's attack: text/plain, foreign Origin and Host",
                 admin({"Content-Type": "text/plain", "Origin": "http://evil.example"}, host="evil.example"), (403,),
                 "cross_site_refused"),
        HttpCase("rebinding-host", "admin", "a foreign Host (DNS rebinding) with a JSON content type",
                 admin({"Content-Type": "application/json"}, host="evil.example:8000"), (403,), "cross_site_refused"),
        HttpCase("foreign-origin", "admin", "an Origin of another site",
                 admin({"Content-Type": "application/json", "Origin": "http://evil.example"}), (403,),
                 "cross_site_refused"),
        HttpCase("origin-null", "admin", "Origin: null (sandboxed frame)",
                 admin({"Content-Type": "application/json", "Origin": "null"}), (403,), "cross_site_refused"),
        HttpCase("sec-fetch-cross-site", "admin", "Sec-Fetch-Site: cross-site",
                 admin({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}), (403,),
                 "cross_site_refused"),
        HttpCase("form-content-type", "admin", "a same-host form post",
                 admin({"Content-Type": "application/x-www-form-urlencoded"}), (403,), "cross_site_refused"),
        HttpCase("no-content-type", "admin", "no content type and no key (a no-cors fetch)", admin({}), (403,),
                 "cross_site_refused"),
        HttpCase("keyed-server-no-admin-key", "admin", "reload on a keyed server with no key at all",
                 lambda t: exchange(t.keyed_port, request_head("POST", "/v1/admin/reload",
                                                               {"Content-Type": "application/json"}, length=0)),
                 (401,), "unauthorized"),
    ]  # fmt: skip


def _header_cases() -> list[HttpCase]:
    def raw(head: bytes) -> Callable[[Target], Answer]:
        return lambda t: exchange(t.open_port, head)

    def unsafe_id(a: Answer) -> None:
        assert "x-client-request-id" not in a.headers and len(a.headers["x-request-id"]) == 32, a.headers

    many = "".join(f"X-H{i}: v\r\n" for i in range(3000))
    close = "Connection: close\r\n"
    return [
        HttpCase("huge-header-line", "headers", "a 2 MB header",
                 raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n"), (400, 431, 0),
                 None),
        HttpCase("3000-headers", "headers", "3000 header lines",
                 raw(f"GET /healthz HTTP/1.1\r\nHost: t\r\n{close}{many}\r\n".encode()), (200, 400, 431, 0), None),
        HttpCase("long-url", "headers", "a 100 kB query string",
                 raw(b"GET /healthz?" + b"q" * 100_000 + f" HTTP/1.1\r\nHost: t\r\n{close}\r\n".encode()),
                 (200, 400, 414, 431, 0), None),
        HttpCase("unsafe-request-id", "headers", "an X-Request-ID with spaces and 300 characters",
                 raw(request_head("GET", "/healthz", {"X-Request-ID": "a b" * 100})), (200,), None, check=unsafe_id),
        HttpCase("path-traversal", "headers", "/static/../../bundle.json",
                 raw(request_head("GET", "/static/../../bundle.json")), (404,), None),
        HttpCase("encoded-traversal", "headers", "/static/%2e%2e/%2e%2e/pyproject.toml",
                 raw(request_head("GET", "/static/%2e%2e/%2e%2e/pyproject.toml")), (404,), None),
        HttpCase("bad-query-type", "headers", "explain=maybe",
                 lambda t: post(t.open_port, "/v1/score?explain=maybe", multipart([("files", "a.jpg", _tiny_jpeg())]),
                                MULTIPART), (422,), "invalid_request"),
        HttpCase("http10-no-host", "headers", "HTTP/1.0 without Host", raw(b"GET /healthz HTTP/1.0\r\n\r\n"), (200,),
                 None),
    ]  # fmt: skip


def cases() -> list[HttpCase]:
    """Every HTTP-level case."""
    out = [
        *_method_cases(),
        *_body_cases(),
        *_multipart_cases(),
        *_json_cases(),
        *_auth_cases(),
        *_admin_cases(),
        *_header_cases(),
    ]
    names = [c.name for c in out]
    assert len(names) == len(set(names)), "case names must be unique"
    return out


def image_cases() -> list[HttpCase]:
    """Every file of :mod:`hostile.images` as a ``POST /v1/score`` upload: 200 with the decoded
    (oriented) size, or 422 with the refusal's code."""

    def wrap(case: ImageCase) -> HttpCase:
        body = multipart([("files", f"{case.name}.jpg", case.data)])
        expect = case.expect

        def check(a: Answer) -> None:
            if isinstance(expect, Decoded):
                image = json.loads(a.body)["images"][0]
                assert (image["width"], image["height"]) == expect.size, (image["width"], image["height"])

        code = None if isinstance(expect, Decoded) else expect.code
        return HttpCase(
            f"image-{case.name}",
            f"image-{case.group}",
            case.what,
            lambda t: post(t.open_port, "/v1/score", body, MULTIPART),
            (case.http_status,),
            code,
            10.0,
            check,
        )

    return [wrap(c) for c in image_file_cases()]
