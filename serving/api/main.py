"""All routers of the API."""

from fastapi import APIRouter

from serving.api.routes import admin, gallery, model, ops, page, review, score, video

api_router = APIRouter()
api_router.include_router(page.router)
api_router.include_router(ops.router)
api_router.include_router(video.router)  # before score: /v1/score/video is its own route
api_router.include_router(score.router)
api_router.include_router(model.router)
api_router.include_router(gallery.router)
api_router.include_router(review.router)
api_router.include_router(review.page_router)
api_router.include_router(admin.router)
