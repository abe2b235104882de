"""Offline side of authlens: data, training, evaluation, export.

Modules here import torch, timm and albumentations lazily inside functions where a CLI module
imports them, so ``authlens --help`` and the serving commands start without them.
"""
