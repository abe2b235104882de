"""The naive baseline ``make bench`` compares ``authlens serve`` with: the pattern of most public
counterfeit-detection (and image-classification) demos.

Usage: ``python -m benchmarks.baseline_server --bundle bundles/sneakers --port 8001``

FastAPI + PyTorch eager, the model loaded at start-up, and an ``async def`` route that reads the
upload, decodes it in full with Pillow, resizes it and runs the network on it, one image per
request, inline on the event loop: no thread pool, no batching, no reduced-scale decoding, no
admission control. It serves the bundle's architecture (weights: ``--weights`` or random; speed
does not depend on them) with the same input size and resize, on the same routes as authlens
(``/v1/score``, ``/v1/score/batch`` as a loop over the images, ``/readyz``), in one process with
one torch thread per core and uvicorn's h11 parser without access log, as ``authlens serve``.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image, ImageOps

from benchmarks.subject import eager_graph
from model.bundle import load_bundle


def create_app(bundle_dir: Path, weights: Path | None = None) -> FastAPI:
    """The baseline app for ``bundle_dir`` (model loaded here, before the server starts)."""
    torch.set_num_threads(os.cpu_count() or 1)
    bundle = load_bundle(bundle_dir)
    spec = bundle.manifest.input
    model = eager_graph(bundle, weights)
    app = FastAPI(title="naive baseline")

    def predict(data: bytes) -> dict[str, Any]:
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")  # full decode
        image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(image)).unsqueeze(0)  # (1, H, W, 3) uint8
        with torch.no_grad():
            p_genuine = float(model(x)[0][0])
        return {
            "authenticity_score": round(p_genuine, 6),
            "verdict": "genuine" if p_genuine >= 0.5 else "counterfeit",
        }

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/score")
    async def score(files: list[UploadFile] = File(...)) -> dict[str, Any]:
        return predict(await files[0].read())

    @app.post("/v1/score/batch")
    async def score_batch(files: list[UploadFile] = File(...)) -> dict[str, Any]:
        return {"results": [{"status": "ok", **predict(await f.read())} for f in files]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--weights", type=Path, default=None, help="State dict of the network (default random)."
    )
    args = parser.parse_args()
    app = create_app(args.bundle, args.weights)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, http="h11")


if __name__ == "__main__":
    main()
