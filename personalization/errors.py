"""Exceptions raised by Pixelcast, all under one root so callers can catch them together."""

from __future__ import annotations


class PixelcastError(Exception):
    """Root of every error that Pixelcast raises on purpose.

    ``status`` is the HTTP status the server answers a request that raised it with (the server maps them
    all in one handler); ``str(exc)`` is the message sent with it, so it must be safe to show the client.
    """

    status = 500


class InvalidMessage(PixelcastError):
    """A client message (data channel or HTTP) that does not follow the schema.

    ``str(exc)`` is a human-readable sentence naming the problem, safe to send back to the client.
    """

    status = 400


class UnknownViewer(PixelcastError):
    """The viewer id does not name a viewer that exists (or it is not a well-formed id)."""

    status = 404

    def __init__(self, viewer_id: str) -> None:
        super().__init__(f"unknown viewer {viewer_id!r}")
        self.viewer_id = viewer_id


class EmbeddedRedisError(PixelcastError):
    """The embedded Redis server could not be started (the message carries the tail of its log)."""

    status = 503


class NotReplicated(PixelcastError):
    """Redis took a write but too few replicas confirmed it in time: a failover could still lose it.

    Callers treat it like Redis being away (the event spool keeps the event, and its replay skips it if
    it did survive), never as a reason to write the event twice.
    """

    status = 503
