"""Pixelcast personalization package."""
