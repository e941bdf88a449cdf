"""Pixelcast streamer package."""
