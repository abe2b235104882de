"""``authlens data``: synthesise, validate and split datasets.

Usage: ``authlens data synth --out datasets/synthetic --n 600 --seed 0``
"""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Synthesise, validate and split datasets.", no_args_is_help=True)


@data_app.command(help="Generate synthetic product photos with labelled tells.")
def synth() -> None:
    raise NotImplementedError("authlens data synth")


@data_app.command(help="Open every image of a dataset and report problems and near-duplicates.")
def validate() -> None:
    raise NotImplementedError("authlens data validate")


@data_app.command(help="Write a leak-free, stratified, grouped train/val/test split.")
def split() -> None:
    raise NotImplementedError("authlens data split")
