"""The For-You feed service: recall, features, ranking and re-ranking per request, behind an HTTP API.

``app.create_app(config)`` builds the FastAPI app; ``server.run_server`` (``reelhouse serve``)
and ``server.ServingServer`` (a background thread, for tests and benchmarks) run it on uvicorn.
docs/serving.md describes the API, the stages and how each one degrades.
"""
