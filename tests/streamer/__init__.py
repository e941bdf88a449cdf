"""Streamer tests: clients here talk to a server on loopback, so their ICE stays on loopback too."""

from streamer.whep_client import use_loopback_only

use_loopback_only()
