"""Typer commands of the offline side; heavy libraries are imported inside command bodies."""
