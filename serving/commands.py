"""``authlens serve``, ``score``, ``score-video``, ``gallery``, ``verify-receipt``, ``bench``,
``new-api-key``, ``new-receipt-key``.

Usage: ``authlens serve --bundle bundles/demo --port 8000``;
``authlens score-video stream.mp4 --bundle bundles/demo --out report.json``;
``authlens gallery add catalogue/*.jpg --bundle bundles/demo --source "brand catalogue 2026"``

Heavy imports (onnxruntime, fastapi, uvicorn) happen inside each command, so ``authlens --help``
stays fast; none of these commands imports torch.
"""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from model.cliutil import err_console, fail, user_errors

BundleOpt = Annotated[Path, typer.Option("--bundle", help="Bundle directory (bundle.json + model.onnx).")]


def serve(
    bundle: BundleOpt,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default AUTHLENS_HOST, else 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default AUTHLENS_PORT, else 8000).")] = None,
    allow_insecure: Annotated[
        bool, typer.Option("--allow-insecure", help="Listen beyond loopback with no API keys.")
    ] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Serve the bundle's INT8 model.")] = False,
    receipt_key: Annotated[
        Path | None, typer.Option("--receipt-key", help="Ed25519 PEM key signing receipts.")
    ] = None,
) -> None:
    """Serve a bundle over HTTP: API, web page, metrics. Other settings: AUTHLENS_* variables
    (see serving/core/config.py); log level: ``authlens --log-level DEBUG serve ...``."""
    from pydantic import ValidationError

    from model.bundle import BundleError, load_bundle

    overrides: dict[str, object] = {"bundle": bundle}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if allow_insecure:
        overrides["allow_insecure"] = True
    if int8:
        overrides["int8"] = True
    if receipt_key is not None:
        overrides["receipt_key_file"] = receipt_key
    from serving.core.config import Settings

    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise fail("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    from serving.receipts import ReceiptError, load_private_key

    with user_errors(BundleError, ReceiptError):
        b = load_bundle(settings.bundle)
        if settings.int8:
            b.onnx_path(int8=True)
        if settings.receipt_key_file is not None:
            load_private_key(settings.receipt_key_file)
    import uvicorn

    from serving.main import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        lifespan="on",
        server_header=False,
        # h11 caps a request head at 16 KiB (431/400 beyond); httptools has no such limit, so a
        # client could make the server buffer megabytes of headers. Parsing is microseconds next
        # to decoding a photo, so the pure-Python parser costs nothing that shows.
        http="h11",
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise typer.Exit(1)


class Engine(StrEnum):
    """Where ``authlens score`` runs."""

    local = "local"
    ray = "ray"


class OutFormat(StrEnum):
    """Part-file format of Ray batch scoring."""

    jsonl = "jsonl"
    parquet = "parquet"


def score(
    bundle: Annotated[
        str,
        typer.Option("--bundle", help="Bundle directory (with --engine ray also a URI every node reads)."),
    ],
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Photos, folders (recursive) or CSV/JSONL manifests (file[, item_id]); "
            "with --engine ray also URIs and Parquet crawler dumps."
        ),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="JSON Lines, one line per item (default results.jsonl); with --engine ray a folder of "
            "part files (default results/), path or URI, resumed when it holds some.",
        ),
    ] = None,
    item: Annotated[bool, typer.Option("--item", help="Treat all given photos as one item (<= 8).")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Include overlays (large output).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Use the bundle's INT8 model.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=256, help="Images per model call.")] = 16,
    receipt_key: Annotated[
        Path | None,
        typer.Option("--receipt-key", help="Sign item results with this key (Ray: same path on every node)."),
    ] = None,
    engine: Annotated[
        Engine, typer.Option("--engine", help="local: this process; ray: Ray Data on a Ray cluster.")
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster (ray://HEAD:10001, HEAD:6379 or auto); default RAY_ADDRESS, else a Ray "
            "instance started here for the run.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Ray scoring actors, one CPU each (default: one per CPU of the cluster)."),
    ] = None,
    out_format: Annotated[
        OutFormat, typer.Option("--format", help="Ray part files: jsonl or parquet.")
    ] = OutFormat.jsonl,
    gallery: Annotated[
        Path | None,
        typer.Option(
            "--gallery",
            help="Reference gallery to look photos up in (default gallery.sqlite beside the bundle, when it exists).",
        ),
    ] = None,
) -> None:
    """Score photos offline with the same predictor as the API; writes JSONL and a summary.

    With ``--engine ray`` the photos are scored by Ray Data actors on a Ray cluster (a local one
    by default) into a folder of part files, resumed when run again (docs/DEPLOY.md).
    """
    from rich.console import Console

    if engine is Engine.local and (address or workers or out_format is not OutFormat.jsonl):
        raise fail("--address, --workers and --format belong to --engine ray.")
    if engine is Engine.ray and gallery is not None:
        raise fail("--gallery belongs to --engine local (Ray workers do not look photos up yet).")
    if engine is Engine.ray:
        summary, title, target = _score_ray(
            bundle,
            paths,
            out or "results",
            item=item,
            explain=explain,
            int8=int8,
            batch_size=batch_size,
            receipt_key=receipt_key,
            address=address,
            workers=workers,
            out_format=out_format,
        )
    else:
        summary, title, target = _score_local(
            bundle,
            paths,
            out or "results.jsonl",
            item=item,
            explain=explain,
            int8=int8,
            batch_size=batch_size,
            receipt_key=receipt_key,
            gallery=gallery,
        )
    console = Console(stderr=True)
    console.print(_summary_table(title, summary))
    if summary.skipped:
        console.print(f"skipped {summary.skipped} items already in {target}")
    console.print(f"wrote {target}")


def _score_ray(
    bundle: str,
    paths: list[str],
    out: str,
    *,
    item: bool,
    explain: bool,
    int8: bool,
    batch_size: int,
    receipt_key: Path | None,
    address: str | None,
    workers: int | None,
    out_format: OutFormat,
) -> tuple[Any, str, str]:
    from model.bundle import BundleError, load_bundle
    from serving.offline import InputError
    from serving.receipts import ReceiptError, load_private_key

    try:
        from serving.batch import is_uri, score_with_ray
    except ImportError as exc:
        raise fail(f"--engine ray needs the `ray` extra (pip install 'authlens[ray]'): {exc}.") from None
    title = bundle
    with user_errors(BundleError, InputError, ReceiptError):
        if not is_uri(bundle):  # refuse a bad bundle before the cluster works (a URI: each worker checks)
            b = load_bundle(bundle)
            if int8:
                b.onnx_path(int8=True)
            title = f"{b.manifest.name} {b.manifest.version} ({b.sha256[:12]})"
        if receipt_key is not None:
            load_private_key(receipt_key)
        summary = score_with_ray(
            bundle,
            paths,
            out,
            fmt="parquet" if out_format is OutFormat.parquet else "jsonl",
            address=address,
            workers=workers,
            batch_size=batch_size,
            one_item=item,
            explain=explain,
            int8=int8,
            receipt_key=None if receipt_key is None else str(receipt_key),
        )
    return summary, title, out


def _score_local(
    bundle: str,
    paths: list[str],
    out: str,
    *,
    item: bool,
    explain: bool,
    int8: bool,
    batch_size: int,
    receipt_key: Path | None,
    gallery: Path | None = None,
) -> tuple[Any, str, str]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from model.bundle import BundleError
    from serving.offline import InputError, collect, score_items
    from serving.predictor import Predictor
    from serving.receipts import ReceiptError, ReceiptSigner, load_private_key

    target = Path(out)
    with user_errors(BundleError, InputError, ReceiptError):
        items = collect([Path(p) for p in paths], one_item=item)
        predictor = Predictor.load(Path(bundle), int8=int8, max_pixels=50_000_000)
        signer = ReceiptSigner(load_private_key(receipt_key), ephemeral=False) if receipt_key else None
        _attach_gallery(predictor, bundle, gallery)
    total = sum(len(it.files) for it in items)
    try:
        handle = open(target, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise fail(f"{target}: cannot be written ({exc.strerror}).") from None
    with (
        handle,
        Progress(
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as progress,
    ):
        task = progress.add_task("score", total=total)
        summary = score_items(
            predictor,
            items,
            handle,
            explain=explain,
            batch_size=batch_size,
            signer=signer,
            progress=lambda n: progress.advance(task, n),
        )
    title = f"{predictor.model_ref.name} {predictor.model_ref.version} ({predictor.bundle.sha256[:12]})"
    return summary, title, str(target)


def _summary_table(title: str, summary: Any) -> Any:
    """Verdict counts, errors and photos/s of a scoring run."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("items", justify="right")
    for v in ("genuine", "counterfeit", "inconclusive"):
        table.add_column(v, justify="right")
    table.add_column("errors", justify="right")
    table.add_column("photos/s", justify="right")
    rate = summary.images / summary.seconds if summary.seconds else 0.0
    table.add_row(
        str(summary.items),
        *(str(summary.verdicts[v]) for v in ("genuine", "counterfeit", "inconclusive")),
        str(summary.errors),
        f"{rate:.1f}",
    )
    return table


def verify_receipt(
    file: Annotated[
        Path,
        typer.Argument(
            help="A receipt, a /v1/score or batch answer (JSON), score JSONL, or a case file (ZIP)."
        ),
    ],
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="PEM public key (or base64 of the raw 32 bytes).")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Fetch the key from this server's /v1/receipts/public-key.")
    ] = None,
) -> None:
    """Check evidence receipts' Ed25519 signatures, and that the answer around each receipt says
    what was signed; exit 1 if any fails. Files are read as strict I-JSON (duplicate keys refused)."""
    from serving.ijson import IJSONError, loads
    from serving.receipts import ReceiptError, check_answer, find_answers, key_id, load_public_key
    from serving.receipts import verify_receipt as verify

    if public_key is not None and server is not None:
        raise fail("Give one of --public-key FILE or --server URL, not both.")
    docs, case_key, case_problems = _case_documents(file)
    if public_key is None and server is None and case_key is None:
        raise fail("Give exactly one of --public-key FILE or --server URL.")
    with user_errors(ReceiptError, OSError):
        if public_key is not None:
            key = load_public_key(public_key.read_bytes())
        elif server is not None:
            key = load_public_key(_fetch_key(server))
        elif case_key is not None:  # a case file's own key: the receipts are intact, not whose key it is
            key = load_public_key(case_key)
            err_console.print(
                f"using the case file's receipt-key.pub (key_id {key_id(key)}): compare it with the "
                "server's published key, or pass --public-key",
                highlight=False,
            )
        data = b"" if docs is not None else file.read_bytes()
    if docs is None:
        try:
            docs = [loads(data)]
        except IJSONError as whole:
            try:
                docs = [loads(line) for line in data.splitlines() if line.strip()]
            except IJSONError as exc:
                raise fail(f"{file}: not strict JSON ({whole}) nor JSON Lines ({exc}).") from None
    for problem in case_problems:
        err_console.print(f"[bold red]INVALID[/] {problem}", highlight=False)
    found = [f for d in docs for f in find_answers(d)]
    if not found:
        raise fail(f"{file}: no receipt found.")
    failed = 0
    for f in found:
        r = f.receipt
        try:
            payload = verify(r, key)
        except ReceiptError as exc:
            failed += 1
            err_console.print(f"[bold red]INVALID[/] {exc}", highlight=False)
            continue
        problems = check_answer(payload, f)
        if problems:
            failed += 1
            err_console.print(
                "[bold red]INVALID[/] the signature holds but the answer differs from its signed payload: "
                + "; ".join(problems),
                highlight=False,
            )
            continue
        model = payload.get("model", {})
        if not isinstance(model, dict):
            model = {}
        print(
            f"VALID {payload.get('verdict')} authenticity={payload.get('authenticity_score')} "
            f"issued={payload.get('issued_at')} bundle={str(model.get('bundle_sha256', ''))[:12]} "
            f"inputs={len(payload.get('input_sha256', []))} key={r.get('key_id')}"
        )
    if failed or case_problems:
        raise typer.Exit(1)


def _case_documents(file: Path) -> tuple[list[Any] | None, str | None, list[str]]:
    """``(answers, public key PEM, photo problems)`` of a case file (ZIP); ``(None, None, [])``
    for any other file."""
    import zipfile

    if not file.is_file() or not zipfile.is_zipfile(file):
        return None, None, []
    from serving.review.casefile import CaseError, read_case

    with user_errors(CaseError):
        return read_case(file)


def _fetch_key(server: str) -> str:
    import urllib.request

    from serving.receipts import ReceiptError

    url = server.rstrip("/") + "/v1/receipts/public-key"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())["public_key_pem"]
    except (OSError, ValueError, KeyError) as exc:
        raise ReceiptError(f"Could not fetch the public key from {url}: {exc}") from None


def new_api_key(
    admin: Annotated[bool, typer.Option("--admin", help="Label it as the admin key.")] = False,
) -> None:
    """Print a new random API key and the SHA-256 hash the server stores."""
    import hashlib
    import secrets

    key = secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    var = "AUTHLENS_ADMIN_KEY_HASH" if admin else "AUTHLENS_API_KEY_HASHES"
    value = digest if admin else json.dumps([digest])
    print(f"key:  {key}\nhash: {digest}\nserver setting: {var}='{value}'")
    err_console.print("Give the key to the client; store only the hash on the server.")


def new_receipt_key(
    path: Annotated[
        Path,
        typer.Argument(help="Where to write the PEM private key (mode 600); PATH.pub gets the public key."),
    ],
) -> None:
    """Create the Ed25519 key that signs evidence receipts."""
    from serving.receipts import ReceiptError, key_id, write_private_key

    with user_errors(ReceiptError, OSError):
        key = write_private_key(path)
    print(f"wrote {path} (private, mode 600) and {path}.pub; key_id {key_id(key.public_key())}")
    err_console.print(f"Serve with AUTHLENS_RECEIPT_KEY_FILE={path}; publish {path}.pub.")


def bench(
    bundle: BundleOpt,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the figures as JSON.")] = None,
    seconds: Annotated[float, typer.Option(min=1, help="Duration of each load run.")] = 15.0,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Concurrent clients in load runs.")] = 4,
    skip_load: Annotated[bool, typer.Option("--skip-load", help="Only decode and model timings.")] = False,
    int8_model: Annotated[
        Path | None, typer.Option("--int8-model", help="An INT8 graph to time when the bundle has none.")
    ] = None,
) -> None:
    """Measure decoding (full vs draft), model time (fp32, INT8) and HTTP load on this machine.

    Run it under the shared CPU lock: ``flock /tmp/authlens-heavy.lock authlens bench ...``.
    """
    from model.bundle import BundleError
    from serving.bench import run_bench

    with user_errors(BundleError):
        report = run_bench(
            bundle, seconds=seconds, concurrency=concurrency, load=not skip_load, int8_path=int8_model
        )
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)


def _attach_gallery(predictor: Any, bundle: str | Path, gallery: Path | None) -> None:
    """Look photos up in ``gallery``, or in the gallery beside the bundle when there is one."""
    from serving.core.config import gallery_beside
    from serving.gallery.store import Gallery, GalleryError

    path = gallery or gallery_beside(bundle)
    if gallery is not None and not path.is_file():
        raise fail(f"{path}: no such gallery.")
    if path.is_file():
        with user_errors(GalleryError):
            predictor.attach_gallery(Gallery(path))


def score_video(
    videos: Annotated[list[Path], typer.Argument(help="Recordings: MP4, MKV (WebM), FLV or MPEG-TS.")],
    bundle: BundleOpt,
    out: Annotated[
        Path, typer.Option("--out", help="The report (JSON); timeline strips are written beside it.")
    ] = Path("report.json"),
    sample_fps: Annotated[
        float, typer.Option(min=0.05, max=30, help="Frames scored per second of video.")
    ] = 2.0,
    batch_size: Annotated[int, typer.Option(min=1, max=256, help="Frames per model call.")] = 16,
    int8: Annotated[bool, typer.Option("--int8", help="Use the bundle's INT8 model.")] = False,
    max_duration: Annotated[float, typer.Option(min=1, help="Longest recording in seconds.")] = 4 * 3600.0,
    max_bytes: Annotated[int, typer.Option(min=1024, help="Largest recording in bytes.")] = 16 * 2**30,
) -> None:
    """Find when suspect items were on screen in recorded live streams (same predictor as the API).

    Each recording is sampled, split into shots, and each shot judged like the photos of one item;
    the report lists segments with times, verdicts, scores, flags and a thumbnail of the most
    suspect frame, and a timeline PNG is written beside it per recording.
    """
    import base64

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from model.bundle import BundleError
    from serving.predictor import Predictor
    from serving.video.analysis import VideoOptions, analyse_video
    from serving.video.decode import VideoError, VideoLimits, probe

    try:  # before hours of scoring, not after
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"{out.parent}: cannot be created ({exc.strerror}).") from None
    with user_errors(BundleError):
        predictor = Predictor.load(bundle, int8=int8, max_pixels=50_000_000)
    options = VideoOptions(
        sample_fps=sample_fps,
        batch=batch_size,
        limits=VideoLimits(max_bytes=max_bytes, max_duration_s=max_duration, max_pixels=7680 * 4320),
    )
    console = Console(stderr=True)
    reports: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    table = Table(title=f"{predictor.model_ref.name} {predictor.model_ref.version}")
    for col in ("recording", "duration", "segments", "suspect at", "complete", "x real time"):
        table.add_column(col)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f} %"),
        TimeRemainingColumn(), console=console,
    ) as progress:  # fmt: skip
        for path in videos:
            task = progress.add_task(path.name[:40], total=1.0)

            def advance(done: float, total: float, task: Any = task) -> None:
                progress.update(task, completed=done / total if total else 0)

            try:
                info = probe(path, options.limits) if path.is_file() else None
                if info is None:
                    raise VideoError("no such file.")
                report = analyse_video(
                    path,
                    predictor,
                    score=predictor.infer,
                    options=options,
                    info=info,
                    progress=advance,
                )
            except VideoError as exc:
                errors.append({"video": str(path), "code": exc.code, "message": exc.message})
                progress.update(task, completed=1.0, description=f"{path.name[:30]} [red]{exc.code}")
                continue
            progress.update(task, completed=1.0)
            png = out.with_name(f"{out.stem}.{len(reports)}.timeline.png")
            reports.append({"file": str(path), "timeline_png": png.name, **report.model_dump(mode="json")})
            try:
                png.write_bytes(base64.b64decode(report.timeline_png_base64))
            except OSError as exc:
                raise fail(f"{png}: cannot be written ({exc.strerror}).") from None
            suspects = ", ".join(
                f"{s.start_s:.1f}-{s.end_s:.1f} s" for s in report.segments if s.verdict == "counterfeit"
            )
            table.add_row(
                path.name, f"{report.video.duration_s:.1f} s", str(len(report.segments)), suspects or "-",
                "yes" if report.complete else f"stopped at {report.stopped_at_s} s", f"{report.processing.realtime_factor:.1f}",
            )  # fmt: skip
    try:
        out.write_text(
            json.dumps(
                {"model": predictor.model_ref.model_dump(), "videos": reports, "errors": errors}, indent=1
            )
            + "\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise fail(f"{out}: cannot be written ({exc.strerror}).") from None
    console.print(table)
    for e in errors:
        err_console.print(f"[bold red]{e['code']}[/] {e['video']}: {e['message']}", highlight=False)
    console.print(f"wrote {out}")
    if errors and not reports:
        raise typer.Exit(1)


gallery_app = typer.Typer(
    help="The reference gallery of catalogue and listing photos (reused-photo detection).",
    no_args_is_help=True,
)
GalleryOpt = Annotated[
    Path | None, typer.Option("--gallery", help="The gallery file (default gallery.sqlite beside --bundle).")
]


def _gallery_path(gallery: Path | None, bundle: Path | None) -> Path:
    from serving.core.config import gallery_beside

    if gallery is not None:
        return gallery
    if bundle is None:
        raise fail("Give --gallery FILE or --bundle DIR (its gallery.sqlite is used).")
    return gallery_beside(bundle)


@gallery_app.command("add")
def gallery_add(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos to add.")],
    bundle: BundleOpt,
    source: Annotated[str, typer.Option("--source", help="Where they come from (catalogue name, URL ...).")],
    kind: Annotated[str, typer.Option("--kind", help="catalogue or listing.")] = "catalogue",
    label: Annotated[str | None, typer.Option("--label", help="Product model or any label.")] = None,
    listing_id: Annotated[
        str | None, typer.Option("--listing-id", help="Listing id (listing photos).")
    ] = None,
    seller_id: Annotated[str | None, typer.Option("--seller-id", help="Seller id (listing photos).")] = None,
    gallery: GalleryOpt = None,
) -> None:
    """Decode and embed photos with the bundle's model and store them with their perceptual hashes."""
    from model.bundle import BundleError
    from serving.gallery.service import add_scored
    from serving.gallery.store import KINDS, Gallery, GalleryError
    from serving.offline import InputError, collect, load_photo
    from serving.predictor import PreparedImage

    if kind not in KINDS:
        raise fail(f"Unknown kind {kind!r}. Allowed: {', '.join(KINDS)}.")
    with user_errors(BundleError, InputError, GalleryError):
        files = [f for it in collect(photos) for f in it.files]
        predictor = _load_predictor(bundle)
        store = Gallery(_gallery_path(gallery, bundle))
    added = existing = failed = 0
    for f in files:
        prepared = load_photo(predictor, f, False)
        if not isinstance(prepared, PreparedImage):
            failed += 1
            err_console.print(f"[red]{prepared.code}[/] {f}: {prepared.message}", highlight=False)
            continue
        raw = predictor.infer(prepared.pixels[None])[0]
        with user_errors(GalleryError):
            ref, new = add_scored(
                store, predictor, prepared, raw, source=source, kind=kind, label=label,
                listing_id=listing_id, seller_id=seller_id,
            )  # fmt: skip
        added += new
        existing += not new
        print(f"{ref.id}\t{'added' if new else 'exists'}\t{f}")
    err_console.print(
        f"{added} added, {existing} already there, {failed} failed; {len(store)} references in {store.path}"
    )
    store.close()
    if failed and not (added or existing):
        raise typer.Exit(1)


def _load_predictor(bundle: Path) -> Any:
    from serving.predictor import Predictor

    predictor = Predictor.load(bundle, max_pixels=50_000_000)
    predictor.hash_photos = True  # references need their perceptual hashes
    return predictor


@gallery_app.command("list")
def gallery_list(
    gallery: GalleryOpt = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Use gallery.sqlite beside this bundle.")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only catalogue or listing.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most references shown.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """References, newest first."""
    from rich.console import Console
    from rich.table import Table

    from serving.gallery.service import reference_out
    from serving.gallery.store import Gallery, GalleryError

    path = _gallery_path(gallery, bundle)
    if not path.is_file():
        raise fail(f"{path}: no such gallery.")
    with user_errors(GalleryError):
        store = Gallery(path)
        refs = store.references(kind=kind, limit=limit)
        total = len(store)
    if as_json:
        for r in refs:
            print(reference_out(r).model_dump_json())
        return
    table = Table(title=f"{path} ({total} references)")
    for col in ("id", "kind", "source", "label", "listing", "seller", "size", "sha256"):
        table.add_column(col)
    for r in refs:
        table.add_row(str(r.id), r.kind, r.source, r.label or "", r.listing_id or "", r.seller_id or "",
                      f"{r.width}x{r.height}", r.sha256[:12])  # fmt: skip
    Console().print(table)


@gallery_app.command("remove")
def gallery_remove(
    ids: Annotated[list[int], typer.Argument(help="Reference ids to remove.")],
    gallery: GalleryOpt = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Use gallery.sqlite beside this bundle.")
    ] = None,
) -> None:
    """Delete references (with their sightings); exit 1 if any id was unknown."""
    from serving.gallery.store import Gallery, GalleryError

    path = _gallery_path(gallery, bundle)
    if not path.is_file():
        raise fail(f"{path}: no such gallery.")
    unknown = 0
    with user_errors(GalleryError):
        store = Gallery(path)
        for ref_id in ids:
            if store.remove(ref_id):
                print(f"removed {ref_id}")
            else:
                unknown += 1
                err_console.print(f"[red]no reference {ref_id}[/]")
    if unknown:
        raise typer.Exit(1)


@gallery_app.command("clusters")
def gallery_clusters(
    gallery: GalleryOpt = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Use gallery.sqlite beside this bundle.")
    ] = None,
    min_listings: Annotated[int, typer.Option(min=2, help="Least number of distinct listings.")] = 2,
    limit: Annotated[int, typer.Option(min=1, help="Most clusters.")] = 100,
) -> None:
    """Photos seen in several listings (JSON lines), most listings first."""
    from serving.gallery.service import cluster_out
    from serving.gallery.store import Gallery, GalleryError

    path = _gallery_path(gallery, bundle)
    if not path.is_file():
        raise fail(f"{path}: no such gallery.")
    with user_errors(GalleryError):
        for c in Gallery(path).clusters(min_listings=min_listings, limit=limit):
            print(cluster_out(c).model_dump_json())
