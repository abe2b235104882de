"""``authlens data``: synthesise, validate and split datasets.

Usage: ``authlens data synth --out datasets/synthetic --n 600 --seed 0``;
``authlens data validate ../shared/data/sneakers-nike --report validate.json``;
``authlens data split datasets/synthetic --out datasets/synthetic/split.csv``
"""

from __future__ import annotations

from pathlib import Path

import typer

from model.cliutil import fail, user_errors

data_app = typer.Typer(help="Synthesise, validate and split datasets.", no_args_is_help=True)


@data_app.command(help="Generate synthetic product photos with labelled tells.")
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (images/, manifest.csv, contact_sheet.png)."),
    n: int = typer.Option(600, "--n", min=1, help="Number of photos."),
    seed: int = typer.Option(0, "--seed", min=0, help="Same seed, same bytes."),
    size: int = typer.Option(384, "--size", min=64, max=2048, help="Square photo side in pixels."),
    min_photos: int = typer.Option(1, "--min-photos", min=1, help="Fewest photos per physical item."),
    max_photos: int = typer.Option(4, "--max-photos", min=1, help="Most photos per physical item."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes to render with."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a synthetic set already in --out."),
) -> None:
    import time
    from collections import Counter

    from rich.console import Console

    from training.data.synth import generate

    if max_photos < min_photos:
        raise fail(f"--max-photos ({max_photos}) must be at least --min-photos ({min_photos}).")
    start = time.perf_counter()
    with user_errors(ValueError, OSError):
        records = generate(
            out,
            n=n,
            seed=seed,
            size=size,
            photos_per_item=(min_photos, max_photos),
            workers=workers,
            overwrite=overwrite,
        )
    elapsed = time.perf_counter() - start
    labels = Counter(r.label for r in records)
    tells = Counter(f for r in records for f in r.flags or ())
    items = len({r.item_id for r in records})
    console = Console(soft_wrap=True)
    console.print(
        f"Wrote {len(records)} photos of {items} items ({labels['genuine']} genuine, "
        f"{labels['counterfeit']} counterfeit) to {out} in {elapsed:.1f} s "
        f"({len(records) / elapsed:.0f} photos/s, {workers} worker(s))."
    )
    console.print("Tells: " + ", ".join(f"{k} {v}" for k, v in sorted(tells.items())))
    console.print(f"Manifest: {out / 'manifest.csv'}; contact sheet: {out / 'contact_sheet.png'}")


@data_app.command(help="Open every image of a dataset and report problems and near-duplicates.")
def validate() -> None:
    raise NotImplementedError("authlens data validate")


@data_app.command(help="Write a leak-free, stratified, grouped train/val/test split.")
def split(
    path: Path = typer.Argument(..., help="Manifest (CSV/JSONL) or dataset folder."),
    out: Path = typer.Option(..., "--out", help="Manifest to write (CSV, or .jsonl), with a split column."),
    val: float = typer.Option(0.15, "--val", help="Share of each label for validation."),
    test: float = typer.Option(0.15, "--test", help="Share of each label for test (0 for none)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Varies which groups go where."),
    threshold: int = typer.Option(8, "--threshold", min=0, max=32, help="Near-duplicate distance in bits."),
    resplit: bool = typer.Option(False, "--resplit", help="Ignore splits already in the manifest."),
) -> None:
    from collections import Counter
    from dataclasses import replace

    from rich.console import Console
    from rich.table import Table

    from training.data.manifest import ManifestError, load_manifest, manifest_hash, write_manifest
    from training.data.split import find_duplicate_pairs, group_records, split_counts, split_records

    with user_errors(ManifestError, ValueError, OSError):
        records = load_manifest(path)
        if resplit:
            records = [replace(r, split=None) for r in records]
        pairs = (
            find_duplicate_pairs(records, threshold=threshold)
            if any(r.item_id is None for r in records)
            else []
        )
        groups = group_records(records, duplicate_pairs=pairs)
        records = split_records(
            records,
            val_fraction=val,
            test_fraction=test,
            seed=seed,
            threshold=threshold,
            duplicate_pairs=pairs,
        )
        written = write_manifest(records, out)
    counts = split_counts(records)
    table = Table(title=f"{written} (manifest hash {manifest_hash(records)[:12]})")
    for column in ("split", "genuine", "counterfeit", "photos", "share"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name in ("train", "val", "test"):
        row = counts.get(name, {})
        n = sum(row.values())
        table.add_row(
            name,
            str(row.get("genuine", 0)),
            str(row.get("counterfeit", 0)),
            str(n),
            f"{n / len(records):.1%}",
        )
    console = Console(soft_wrap=True)
    console.print(table)
    sizes = list(Counter(int(g) for g in groups).values())
    console.print(
        f"{len(sizes)} groups (items or near-duplicate clusters) for {len(records)} photos; "
        f"{sum(s > 1 for s in sizes)} hold more than one photo, the largest {max(sizes)}."
    )
