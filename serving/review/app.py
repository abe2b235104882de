"""The review queue's objects on a running app, made on first use: the recorder (and its store)."""

from __future__ import annotations

import threading
from typing import Any

from serving.core.config import Settings
from serving.review.service import Recorder

_lock = threading.Lock()


def recorder(app: Any) -> Recorder:
    """The app's :class:`Recorder` (``app.state.review``), created from its settings once."""
    rec: Recorder | None = getattr(app.state, "review", None)
    if rec is not None:
        return rec
    with _lock:
        rec = getattr(app.state, "review", None)
        if rec is None:
            settings: Settings = app.state.settings
            url, photos, spool = settings.review_paths()
            rec = Recorder(url, photos, spool, retry_s=settings.review_retry_s)
            app.state.review = rec
    return rec
