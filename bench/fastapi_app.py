"""The comparison service for bench/: the smallest FastAPI app a team would write for the same
readiness probe and health route, served by uvicorn with its standard extras (uvloop, httptools)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def ready() -> dict:
    return {}


@app.get("/api/health")
async def health() -> dict:
    return {"status": "ok"}
