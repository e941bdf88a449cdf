"""Run several registered Lua scripts (plus plain commands) in one round trip.

redis-py's pipeline runs ``SCRIPT EXISTS`` before every ``execute()`` that holds a script, which is a
second round trip per call. Here the pipeline sends plain ``EVALSHA``; only a call answered with
``NOSCRIPT`` (after a restart, failover or ``SCRIPT FLUSH``) is run again, alone and in order, through
its ``AsyncScript`` object, which loads the script. A call that succeeded is never repeated, so a
non-idempotent script (an append) is never run twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


@dataclass(frozen=True)
class ScriptCall:
    """One call of a registered script."""

    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[Any] = field(default_factory=tuple)


async def run_scripts(
    redis: aioredis.Redis,
    calls: Sequence[ScriptCall],
    then: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Send ``calls`` (then whatever ``then(pipe)`` queues) in one pipeline.

    Returns the scripts' results, followed by those of the commands ``then`` queued. Errors other than
    ``NOSCRIPT`` are raised; so are errors of the commands queued by ``then``.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for call in calls:
            # execute_command, not pipe.evalsha: a cluster pipeline refuses the named method, but routes
            # the command by its keys like any other
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        if then is not None:
            then(pipe)
        results = await pipe.execute(raise_on_error=False)
    out = list(results)
    for i, call in enumerate(calls):
        if isinstance(out[i], NoScriptError):
            out[i] = await call.script(keys=list(call.keys), args=list(call.args))
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, NoScriptError):
            raise result
    return out
