"""Experiments API (admin token only): define, list, read, stop A/B tests and read their results."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from personalization.experimenting import Experiments

from .auth import require_admin
from .bodies import read_json_object
from .services import services_of


def _experiments(request: Request) -> Experiments:
    """The server's experiments, once the caller is known to be the admin."""
    services = services_of(request)
    require_admin(request, services.admin_token)
    if services.experiments is None:
        raise HTTPException(503, "experiments are not available on this server")
    return services.experiments


async def create_experiment(request: Request) -> JSONResponse:
    """201 with the stored definition; 400 naming the field of a bad one (or a duplicate key)."""
    experiments = _experiments(request)
    body = await read_json_object(request, services_of(request).config.max_body_bytes)
    experiment = await experiments.create(body)  # a bad definition is a 400 naming its field
    location = f"/api/experiments/{experiment.key}"
    return JSONResponse(experiment.to_json(), status_code=201, headers={"Location": location})


async def list_experiments(request: Request) -> JSONResponse:
    """Every experiment, oldest first."""
    experiments = _experiments(request)
    return JSONResponse({"experiments": [e.to_json() for e in await experiments.list()]})


async def get_experiment(request: Request) -> JSONResponse:
    """One definition and its state."""
    experiments = _experiments(request)
    return JSONResponse((await experiments.get(request.path_params["key"])).to_json())


async def stop_experiment(request: Request) -> JSONResponse:
    """Stop assigning viewers (idempotent); the data stay readable."""
    experiments = _experiments(request)
    return JSONResponse((await experiments.stop(request.path_params["key"])).to_json())


async def experiment_results(request: Request) -> JSONResponse:
    """Per-metric results (gbstats), SRM check and cumulative-lift snapshots."""
    experiments = _experiments(request)
    return JSONResponse(await experiments.results(request.path_params["key"]))


routes = [
    Route("/api/experiments", create_experiment, methods=["POST"]),
    Route("/api/experiments", list_experiments, methods=["GET"]),
    Route("/api/experiments/{key}", get_experiment, methods=["GET"]),
    Route("/api/experiments/{key}/stop", stop_experiment, methods=["POST"]),
    Route("/api/experiments/{key}/results", experiment_results, methods=["GET"]),
]
