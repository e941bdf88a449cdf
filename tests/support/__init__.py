"""What tests build for themselves: a tiny random model, so the unit tier runs the real server code fast."""
