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
def split() -> None:
    raise NotImplementedError("authlens data split")
