"""Evaluation of a model against the procedural world.

`probe`: the attribute probe (subject, palette, weather from one frame); `model_eval`: `pixelcast eval
model` (adherence, flicker, drift, transitions); `sections`, `rollout`, `metrics`: its parts.
"""
