"""``authlens review migrate|case`` and ``authlens data export-reviews``.

Usage: ``authlens review migrate --db postgresql+psycopg://authlens@db/authlens``;
``authlens review case 42 --bundle bundles/demo --out case-42.zip``;
``authlens data export-reviews --bundle bundles/demo --out datasets/reviewed``

The database and photo folder default to the server's (``AUTHLENS_REVIEW_DB_URL``,
``AUTHLENS_REVIEW_PHOTOS_DIR``, else beside ``--bundle``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from model.cliutil import fail, user_errors

review_app = typer.Typer(help="The review queue's store: migrations and case files.", no_args_is_help=True)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", envvar="AUTHLENS_REVIEW_DB_URL", help="sqlite:///PATH or postgresql+psycopg://..."),
]
PhotosOpt = Annotated[
    Path | None,
    typer.Option("--photos", envvar="AUTHLENS_REVIEW_PHOTOS_DIR", help="The server's review photo folder."),
]
BundleOpt = Annotated[
    Path | None, typer.Option("--bundle", help="The served bundle: the store defaults to beside it.")
]


def _paths(db: str | None, photos: Path | None, bundle: Path | None) -> tuple[str, Path]:
    if bundle is not None:
        beside = bundle.resolve().parent
        return db or f"sqlite:///{beside / 'review.sqlite'}", photos or beside / "review-photos"
    if db is None or photos is None:
        raise fail("Give --bundle, or both --db and --photos (or AUTHLENS_REVIEW_DB_URL / _PHOTOS_DIR).")
    return db, photos


def _open(url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import SQLAlchemyError

    from serving.review.store import ReviewError, open_store

    with user_errors(ReviewError, SQLAlchemyError):
        return open_store(url)


@review_app.command("migrate")
def migrate(db: DbOpt = None, bundle: BundleOpt = None) -> None:
    """Create or upgrade the review database to the newest schema."""
    url, _ = _paths(db, Path("."), bundle)
    from sqlalchemy.exc import SQLAlchemyError

    from serving.review.store import ReviewError, make_engine
    from serving.review.store import migrate as run

    with user_errors(ReviewError, SQLAlchemyError):
        engine = make_engine(url)
        print(f"review store at revision {run(engine)}")
        engine.dispose()


@review_app.command("case")
def case(
    item: Annotated[int | None, typer.Argument(help="Review item id.")] = None,
    seller: Annotated[
        str | None, typer.Option("--seller", help="A seller's case instead of an item's.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="ZIP to write.")] = Path("case.zip"),
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="The receipt public key (PEM) to include.")
    ] = None,
    db: DbOpt = None,
    photos: PhotosOpt = None,
    bundle: BundleOpt = None,
) -> None:
    """Write the case file (ZIP) of one item or one seller."""
    from serving.receipts import ReceiptError, key_id, load_public_key
    from serving.review import queue, sellers
    from serving.review.casefile import build_case
    from serving.review.store import ReviewError

    if (item is None) == (seller is None):
        raise fail("Give an item id or --seller, not both.")
    url, folder = _paths(db, photos, bundle)
    store = _open(url)
    pem = kid = None
    with user_errors(ReviewError, ReceiptError, OSError):
        if public_key is not None:
            pem = public_key.read_text(encoding="ascii")
            kid = key_id(load_public_key(pem))
        if item is not None:
            data = build_case(f"case-item-{item}", [store.item(item)], folder, public_key_pem=pem, key_id=kid)
        else:
            assert seller is not None
            info = sellers.timeline(store, seller)
            info["linked"] = sellers.linked(store, seller)
            rows, _ = queue.page(store, queue.QueueFilter(status="any", seller_id=seller), limit=200)
            items = [store.item(r["id"]) for r in rows]
            data = build_case(
                f"case-seller-{seller}", items, folder, public_key_pem=pem, key_id=kid, seller=info
            )
        out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes)")


def export_reviews(
    out: Annotated[Path, typer.Option("--out", help="Folder for manifest.csv and photos/.")],
    db: DbOpt = None,
    photos: PhotosOpt = None,
    bundle: BundleOpt = None,
) -> None:
    """Write confirmed review decisions as a training manifest (with the photos); train on it
    beside other data with ``--set data.extra_manifests='["OUT/manifest.csv"]'``."""
    from serving.review.export import export_reviews as run
    from serving.review.store import ReviewError

    url, folder = _paths(db, photos, bundle)
    store = _open(url)
    with user_errors(ReviewError, OSError):
        s = run(store, folder, out)
    print(
        f"wrote {s.manifest}: {s.photos} photos of {s.items} items "
        f"({s.labels['counterfeit']} counterfeit, {s.labels['genuine']} genuine); "
        f"{s.missing_photos} photos not kept, {s.conflicting_photos} confirmed both ways left out"
    )
