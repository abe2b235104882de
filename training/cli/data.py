"""``authlens data``: synthesise, validate and split datasets.

Usage: ``authlens data synth --out datasets/synthetic --n 600 --seed 0``;
``authlens data validate ../shared/data/sneakers-nike --report validate.json``;
``authlens data split datasets/synthetic --out runs/synthetic-split.csv``
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from model.cliutil import fail, user_errors

if TYPE_CHECKING:
    from rich.console import Console

data_app = typer.Typer(help="Synthesise, validate and split datasets.", no_args_is_help=True)


@data_app.command(help="Generate synthetic product photos with labelled tells.")
def synth(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (images/, manifest.csv, contact_sheet.png).")
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of photos.")] = 600,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Same seed, same bytes.")] = 0,
    size: Annotated[int, typer.Option("--size", min=64, max=2048, help="Square photo side in pixels.")] = 384,
    min_photos: Annotated[
        int, typer.Option("--min-photos", min=1, help="Fewest photos per physical item.")
    ] = 1,
    max_photos: Annotated[
        int, typer.Option("--max-photos", min=1, help="Most photos per physical item.")
    ] = 4,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes to render with.")] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a synthetic set already in --out.")
    ] = False,
) -> None:
    import time
    from collections import Counter

    from rich.console import Console

    from training.data.synth import generate

    if max_photos < min_photos:
        raise fail(f"--max-photos ({max_photos}) must be at least --min-photos ({min_photos}).")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from model.cliutil import err_console

    start = time.perf_counter()
    columns = (TextColumn("synthesising"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with user_errors(ValueError, OSError), Progress(*columns, console=err_console) as bar:
        task = bar.add_task("synth", total=n)
        records = generate(
            out,
            n=n,
            seed=seed,
            size=size,
            photos_per_item=(min_photos, max_photos),
            workers=workers,
            overwrite=overwrite,
            progress=lambda k: bar.advance(task, k),
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
def validate(
    path: Annotated[Path, typer.Argument(help="Manifest (CSV/JSONL) or dataset folder.")],
    report: Annotated[Path | None, typer.Option("--report", help="Write the full JSON report here.")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 on bad rows, unreadable photos or leaks.")
    ] = False,
    threshold: Annotated[
        int, typer.Option("--threshold", min=0, max=32, help="Near-duplicate distance in bits.")
    ] = 8,
    min_side: Annotated[
        int, typer.Option("--min-side", min=1, help="List photos whose shorter side is smaller.")
    ] = 128,
) -> None:
    import json

    from rich.console import Console

    from training.data.manifest import ManifestError
    from training.data.validate import validate_dataset

    with user_errors(ManifestError, OSError):
        result = validate_dataset(path, threshold=threshold, min_side=min_side)
    data = result.to_dict()
    if report is not None:
        with user_errors(OSError):
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(data, indent=2) + "\n")
    _print_validation(Console(soft_wrap=True, highlight=False), data, report)
    if strict and not result.clean:
        raise typer.Exit(1)


def _print_validation(console: Console, data: dict[str, Any], report: Path | None) -> None:
    """The readable summary: counts, balance tables, then every problem with its reason."""
    from rich.table import Table

    s = data["summary"]
    console.print(
        f"[bold]{data['source']}[/]: {s['photos']} photos, {s['readable']} readable, {s['unreadable']} unreadable, "
        f"{s['manifest_problems']} bad manifest rows, {s['skipped_files']} files skipped ({s['seconds']} s)."
    )
    sizes = data["sizes"]
    if sizes:
        console.print(
            f"Formats {data['formats']}; modes {data['modes']}; sizes {sizes['width']['min']}..{sizes['width']['max']} x "
            f"{sizes['height']['min']}..{sizes['height']['max']} (most common {', '.join(sizes['most_common'])})."
        )
    for name, rows in data["balance"].items():
        table = Table(title=f"Photos by {name}" if name != "all" else "Photos by label", title_justify="left")
        table.add_column(name)
        for column in ("genuine", "counterfeit", "counterfeit share"):
            table.add_column(column, justify="right")
        for value, row in rows.items():
            total = sum(row.values())
            share = row.get("counterfeit", 0) / total if total else 0.0
            table.add_row(value, str(row.get("genuine", 0)), str(row.get("counterfeit", 0)), f"{share:.0%}")
        console.print(table)
    console.print(
        f"Near-duplicates (pHash <= {data['duplicate_threshold_bits']} bits, mirrored/turned included): "
        f"{s['duplicate_pairs']} pairs in {s['duplicate_clusters']} clusters ({s['photos_in_duplicate_clusters']} photos"
        f"; {s['duplicate_pairs_between_items']} more between distinct item ids, not counted); "
        f"{s['cross_split_duplicates']} cross splits, {s['items_across_splits']} items span splits, "
        f"{s['label_conflicts']} label conflicts."
    )
    sections = [
        ("Bad manifest rows", "manifest_problems", None),
        ("Skipped files", "skipped_files", None),
        ("Unreadable photos", "unreadable", None),
        ("Duplicates across splits (leaks)", "cross_split_duplicates", None),
        ("Items across splits (leaks)", "items_across_splits", None),
        ("Label conflicts", "label_conflicts", None),
        ("Boxes outside the photo", "boxes_outside_image", 10),
        ("Converted modes (handled)", "converted", 10),
        ("EXIF-rotated (handled)", "exif_rotated", 10),
        ("Extension does not match content", "extension_mismatch", 10),
        ("Small photos", "small", 10),
        ("Near-duplicate clusters", "duplicate_clusters", 10),
    ]
    for title, key, limit in sections:
        items = data[key]
        if not items:
            continue
        colour = "red" if limit is None else "yellow"
        console.print(f"[bold {colour}]{title}: {len(items)}[/]")
        for item in items[:limit]:
            if "files" in item:
                where = ", ".join(item["files"])
                why = item.get("reason") or (
                    f"{item.get('max_distance_bits', 0)} bits, labels {'/'.join(item.get('labels', []))}"
                )
            elif "file" in item:
                where = item["file"] + (f" (line {item['line']})" if item.get("line") else "")
                why = item["reason"]
            else:
                where, why = f"line {item['line']}", item["reason"]
            console.print(f"  {where}: {why}")
        if limit is not None and len(items) > limit:
            console.print(
                f"  ... and {len(items) - limit} more" + (f" in {report}" if report else " (see --report)")
            )
    verdict = (
        "[bold green]clean[/]"
        if data["clean"]
        else "[bold red]not clean[/] (bad rows, unreadable photos or leaks)"
    )
    console.print(f"Verdict: {verdict}." + (f" Report: {report}" if report else ""))


@data_app.command(help="Write a leak-free, stratified, grouped train/val/test split.")
def split(
    path: Annotated[Path, typer.Argument(help="Manifest (CSV/JSONL) or dataset folder.")],
    out: Annotated[
        Path, typer.Option("--out", help="Manifest to write (CSV, or .jsonl), with a split column.")
    ],
    val: Annotated[float, typer.Option("--val", help="Share of each label for validation.")] = 0.15,
    test: Annotated[float, typer.Option("--test", help="Share of each label for test (0 for none).")] = 0.15,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Varies which groups go where.")] = 0,
    threshold: Annotated[
        int, typer.Option("--threshold", min=0, max=32, help="Near-duplicate distance in bits.")
    ] = 8,
    resplit: Annotated[
        bool, typer.Option("--resplit", help="Ignore splits already in the manifest.")
    ] = False,
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
            groups=groups,
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
