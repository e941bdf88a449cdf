"""The Pixelcast ASGI app: routes, error handling, and the lifespan that owns every shared object."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import torch
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from models import StreamingEngine
from models.text import TextEncoder
from models.tuning.capacity import CapacityModel
from models.tuning.speed import warm_up
from models.tuning.store import PRECISION_FILE, load_or_choose_precision
from models.world import ATTRIBUTES
from personalization.consumer import EventConsumer
from personalization.errors import PixelcastError
from personalization.experimenting import Experiments
from personalization.personalizer import Personalizer
from personalization.shared_keys import load_or_create_shared_keys
from personalization.spool import EventSpool
from personalization.store import REDIS_UNAVAILABLE, UNAVAILABLE, Store, open_store
from personalization.tokens import (
    KeySet,
    TokenSigner,
    load_or_create_admin_token,
    load_or_create_keys,
    pinned_secret,
)
from personalization.viewers import ViewerRegistry
from personalization.workers import WorkerDirectory

from . import api, experiments_api, pages, whep, workers
from .batching import FrameBatcher
from .config import ServerConfig
from .limits import RateLimiter
from .metrics import Metrics
from .security import WhepCORS
from .services import Services
from .session import SessionManager
from .steering import build_steer_reader
from .webrtc import restrict_host_candidates

logger = logging.getLogger(__name__)

_OFFER_PATH = re.compile(r"(/w/[^/]+)?/offer")  # JSON signalling, also under a worker's prefix

REDIS_RETRY_AFTER_SECONDS = 5
KEY_CHECK_SECONDS = 3600


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if request.url.path.startswith("/api/") or _OFFER_PATH.fullmatch(request.url.path):
        return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=headers)
    return PlainTextResponse(error.detail, status_code=error.status_code, headers=headers)


async def _pixelcast_error(request: Request, error: Exception) -> Response:
    """An error Pixelcast raised on purpose: its own status and message (``PixelcastError.status``)."""
    assert isinstance(error, PixelcastError)
    if error.status >= 500:
        logger.warning("%s %s: %s", request.method, request.url.path, error)
    return await _http_error(request, HTTPException(error.status, str(error)))


async def _redis_unavailable(request: Request, error: Exception) -> Response:
    """A request that needs Redis while it is away: 503 with Retry-After, never a 500."""
    logger.warning("%s %s: Redis is away: %s", request.method, request.url.path, error)
    detail = "Pixelcast's profile store is restarting or unreachable; try again shortly"
    headers = {"Retry-After": str(REDIS_RETRY_AFTER_SECONDS)}
    return await _http_error(request, HTTPException(503, detail, headers=headers))


async def _token_keys(store: Store, data_dir: Path, key_ages: dict[str, float]) -> KeySet:
    """The token key set: the data dir's with an embedded Redis, else the one all workers share in Redis."""
    if store.embedded:
        return await asyncio.to_thread(load_or_create_keys, data_dir, **key_ages)
    return await load_or_create_shared_keys(store.redis, data_dir, **key_ages)


async def _rotate_keys(signer: TokenSigner, store: Store, data_dir: Path, key_ages: dict[str, float]) -> None:
    """Check hourly whether the token signing key is due for rotation (and pick up another server's)."""
    while True:
        await asyncio.sleep(KEY_CHECK_SECONDS)
        try:
            signer.keys = await _token_keys(store, data_dir, key_ages)
        except Exception:  # keep signing with the keys we have; a later check retries
            logger.exception("could not rotate the token keys")


class StartupPhases:
    """Seconds each start-up phase took, for the log ("load 1.2 s, warm-up 0.4 s, ...")."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, phase: str) -> None:
        """Close `phase` now; the next one starts here."""
        now = time.perf_counter()
        self.seconds[phase], self._last = now - self._last, now

    def __str__(self) -> str:
        return ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.seconds.items())


def create_app(config: ServerConfig) -> Starlette:
    """Build the app; the model, Redis and batching start in its lifespan and stop with it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        restrict_host_candidates(config.ice_addresses)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        # The engine's two stages (denoise, decode) each run torch on their own thread; leave a core to
        # the event loop, WebRTC and the encoders. torch's worker threads spin-wait: on a 2-core machine
        # two of them beside a busy loop ran the model at half speed, so each stage gets its own core.
        torch.set_num_threads(config.engine_threads or max(1, ((os.cpu_count() or 2) - 1) // 2))
        store = await open_store(
            config.redis_url, config.data_dir, supervise=True, restart_delay=config.redis_restart_delay
        )
        try:
            logger.info("loading model from %s", config.model_path)
            phases = StartupPhases()
            engine = await asyncio.to_thread(StreamingEngine.from_pretrained, config.model_path, steps=config.steps)
            phases.done("load")
            metrics = Metrics()
            metrics.track_event_loop()
            batcher = FrameBatcher(engine, metrics, max_batch=config.max_batch)
            batcher.start()
            await batcher.run_on_engine(warm_up, engine)
            phases.done("warm-up")
            precision, reused = await batcher.run_on_engine(
                functools.partial(load_or_choose_precision, retime=config.retime_precision),
                engine,
                config.model_path,
                range(1, config.max_batch + 1),
                config.data_dir,
            )
            phases.done("precision (reused)" if reused else "precision")
            how = f"as measured before ({config.data_dir / PRECISION_FILE})" if reused else "where it measured faster"
            logger.info("bfloat16 %s: %s", how, precision)
            capacity = await batcher.run_on_engine(
                CapacityModel.calibrate, engine, config.max_sessions, {1, config.steps}
            )
            phases.done("capacity")
            # A steer is read once, by the steer reader, whose wishes both the policy and the prompt follow;
            # the engine encodes the planner's prompts as they are. Steering text is understood with MiniLM,
            # whatever text encoder the video model has.
            prompts = engine.prompts
            steer_encoder = prompts.text_encoder if engine.kind == "pixelcast" else TextEncoder()
            steer_reader = await batcher.run_on_engine(
                build_steer_reader, steer_encoder, prompts.grounder, prompts.run_embeddings
            )
            prompts.grounding = False
            phases.done("steer reader")
            logger.info("start-up: %s", phases)
            consumer = EventConsumer(store.redis)
            await consumer.start()
            admin_token, created = load_or_create_admin_token(config.data_dir)
            if created:  # shown once; afterwards it is read from the data dir (or $PIXELCAST_ADMIN_TOKEN)
                print(f"Pixelcast admin token (experiments API and /dashboard): {admin_token}", flush=True)
            key_ages = {
                "rotate_seconds": config.token_rotate_days * 86400,
                "verify_seconds": config.token_verify_days * 86400,
            }
            pinned = pinned_secret(config.data_dir)
            rotating = pinned is None
            signer = TokenSigner(pinned if pinned is not None else await _token_keys(store, config.data_dir, key_ages))
            personalizer = Personalizer(
                store.redis, ATTRIBUTES, steer_reader=steer_reader, wait_replicas=config.redis_wait_replicas
            )
            experiments = Experiments(store.redis)
            spool = await EventSpool.open(config.data_dir, personalizer.events, max_events=config.spool_max_events)
            spool.experiments = experiments
            personalizer.attach_spool(spool)
            with contextlib.suppress(*UNAVAILABLE):  # what a previous run spooled (the replayer retries)
                await spool.replay()
            replayer = asyncio.create_task(spool.run(), name="pixelcast-spool")
            services = Services(
                config=config,
                metrics=metrics,
                store=store,
                viewers=ViewerRegistry(store.redis),
                personalizer=personalizer,
                spool=spool,
                offer_limiter=RateLimiter.per_minute(config.offers_per_minute),
                viewer_limiter=RateLimiter.per_minute(config.viewers_per_minute),
                signer=signer,
                batcher=batcher,
                capacity=capacity,
                experiments=experiments,
                admin_token=admin_token,
                workers=WorkerDirectory(store.redis) if config.worker_id else None,
            )
            app.state.services = services
            app.state.sessions = SessionManager(services)
            control = asyncio.create_task(app.state.sessions.controller.run(), name="pixelcast-adaptive")
            heartbeat = None
            if services.workers is not None:
                heartbeat = asyncio.create_task(
                    workers.beat(services.workers, config, app.state.sessions), name="pixelcast-heartbeat"
                )
            if rotating:
                rotation = asyncio.create_task(
                    _rotate_keys(signer, store, config.data_dir, key_ages), name="pixelcast-keys"
                )
            # Everything built so far lives as long as the server: keep it out of the collector's full
            # passes, whose pauses would otherwise grow with the model and stall frames and feedback.
            gc.freeze()
            # A full pass now, over the few objects left tracked: the collector sizes its next full passes by
            # the survivors of the last one, which before the freeze were the model's millions of objects, so
            # without this no full pass would run again and the garbage cycles every closed session leaves
            # (peer connections, tracks, encoders) would pile up: half a MiB per viewer who came and went.
            gc.collect()
            logger.info(
                "Pixelcast ready on http://%s:%d%s (Redis: %s)",
                config.host,
                config.port,
                f" as worker {config.worker_id}" if config.worker_id else "",
                store.url,
            )
            try:
                yield
            finally:
                control.cancel()
                if heartbeat is not None:  # first: no viewer is sent here while the sessions close
                    heartbeat.cancel()
                    await asyncio.gather(heartbeat, return_exceptions=True)
                if rotating:
                    rotation.cancel()
                await app.state.sessions.close_all("the server is shutting down; reconnect in a moment")
                replayer.cancel()
                with contextlib.suppress(*UNAVAILABLE):  # else it stays spooled for the next start
                    await spool.replay()
                await consumer.stop()
                await batcher.stop()
        finally:
            await store.close()

    return Starlette(
        routes=[*pages.routes, *whep.routes, *api.routes, *experiments_api.routes],
        lifespan=lifespan,
        middleware=[Middleware(WhepCORS)],
        exception_handlers={
            HTTPException: _http_error,
            PixelcastError: _pixelcast_error,
            **{error: _redis_unavailable for error in REDIS_UNAVAILABLE},
        },
    )
