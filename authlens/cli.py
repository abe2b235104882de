"""The ``authlens`` command line.

Usage: ``authlens --help``; ``authlens COMMAND --help`` for each command.

Only light modules are imported here; each command imports what it needs when it runs, so
``authlens serve`` and ``authlens score`` never load torch.
"""

from __future__ import annotations

import typer

from model.cliutil import fail
from model.logs import setup_logging
from serving.commands import (
    bench,
    gallery_app,
    new_api_key,
    new_receipt_key,
    score,
    score_video,
    serve,
    verify_receipt,
)
from serving.review.commands import export_reviews, review_app
from training.cli.data import data_app
from training.cli.export import export
from training.cli.train import evaluate, train

app = typer.Typer(
    name="authlens",
    help="Counterfeit detection for luxury goods: data, training, export and serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _setup(
    log_level: str = typer.Option(
        None, "--log-level", envvar="AUTHLENS_LOG_LEVEL", help="DEBUG, INFO, WARNING, ERROR or CRITICAL."
    ),
    log_format: str = typer.Option(None, "--log-format", envvar="AUTHLENS_LOG_FORMAT", help="json or text."),
) -> None:
    """Set up logging once for every command."""
    try:
        setup_logging(log_level, log_format)
    except ValueError as exc:
        raise fail(str(exc)) from None


data_app.command(name="export-reviews", help="Write confirmed review decisions as a training manifest.")(
    export_reviews
)
app.add_typer(data_app, name="data")
app.command(help="Fine-tune a model from a YAML config.")(train)
app.command(help="Evaluate a checkpoint (and a linear-probe baseline) and write a report.")(evaluate)
app.command(help="Export a checkpoint to a verified ONNX bundle.")(export)
app.command(help="Serve a bundle over HTTP (API and web page).")(serve)
app.command(help="Score photos offline with a bundle (same predictor as the API).")(score)
app.command(name="score-video", help="Find when suspect items were on screen in recorded live streams.")(
    score_video
)
app.add_typer(gallery_app, name="gallery")
app.add_typer(review_app, name="review")
app.command(name="verify-receipt", help="Check the signature of an evidence receipt.")(verify_receipt)
app.command(help="Measure decoding, inference and HTTP throughput on this machine.")(bench)
app.command(name="new-api-key", help="Print a new API key and the hash the server stores.")(new_api_key)
app.command(name="new-receipt-key", help="Create the Ed25519 key that signs evidence receipts.")(
    new_receipt_key
)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
