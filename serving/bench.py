"""Measurement harness behind ``authlens bench`` (filled in below)."""
