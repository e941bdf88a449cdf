"""Side-by-side measurements that write JSON (`pixelcast bench ...`)."""
