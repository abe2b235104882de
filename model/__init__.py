"""What training and serving must agree on.

Everything here is numpy + Pillow + pydantic only, except :mod:`model.network`, which holds the
torch/timm network definition and must never be imported by serving code.
"""

__version__ = "0.1.0"
