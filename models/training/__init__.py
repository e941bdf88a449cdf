"""Training of Pixelcast's own text-to-video model on the procedural world (`pixelcast train`)."""
