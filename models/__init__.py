"""Pixelcast models package."""
