"""All routers of the API."""

from fastapi import APIRouter

from serving.api.routes import admin, model, ops, page, score

api_router = APIRouter()
api_router.include_router(page.router)
api_router.include_router(ops.router)
api_router.include_router(score.router)
api_router.include_router(model.router)
api_router.include_router(admin.router)
