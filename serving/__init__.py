"""Online side of authlens: ONNX Runtime predictor, FastAPI app, web page, offline scoring.

Never imports torch, timm or albumentations (a test guards this).
"""
