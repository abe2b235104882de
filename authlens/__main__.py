"""``python -m authlens``: the same as the ``authlens`` command (used by torchrun and the tests)."""

from authlens.cli import main

main()
