"""The nginx configuration that puts several Pixelcast workers behind one address (``pixelcast nginx-config``).

New sessions (``POST /whep``, ``/offer``) and every other route go to any worker; a worker that is full
answers 503 and nginx tries the next one (``proxy_next_upstream http_503``), or it answers 307 to a worker
that has room. A session's own resource carries its worker's prefix (``/w/<id>/whep/sessions/...``), and a
``map`` sends it to that worker, so its ``DELETE`` ends the stream where it runs. Media does not pass
through nginx: it flows over UDP between each worker and its viewers (or through a TURN server).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from personalization.workers import check_worker_id


def nginx_site(
    workers: Mapping[str, str], *, listen: str = "80", max_body: str = "128k", resolver: str | None = None
) -> str:
    """The ``upstream``, ``map`` and ``server`` blocks (for nginx's ``http`` context) for ``workers``.

    ``workers`` maps each worker id (``--worker-id``) to its ``host:port``. Workers named by host name
    (Kubernetes pods) need a ``resolver``: nginx looks up a ``proxy_pass`` with variables at request time.
    """
    if not workers:
        raise ValueError("nginx needs at least one worker")
    for worker_id in workers:
        check_worker_id(worker_id)
    servers = "".join(f"    server {address} max_fails=0;\n" for address in workers.values())
    routes = "".join(f"    {worker_id} {address};\n" for worker_id, address in workers.items())
    return f"""# Pixelcast workers behind nginx; made by `pixelcast nginx-config`.
upstream pixelcast_workers {{
{servers}}}

# /w/<worker id>/... goes to that worker: its WHEP sessions and its own endpoint after a 307.
map $pixelcast_worker $pixelcast_worker_address {{
    default "";
{routes}}}

server {{
    listen {listen};
    client_max_body_size {max_body};
{f"    resolver {resolver} valid=10s;{chr(10)}" if resolver else ""}
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_read_timeout 60s;

    location ~ ^/w/(?<pixelcast_worker>[a-z0-9][a-z0-9-]*)/ {{
        if ($pixelcast_worker_address = "") {{
            return 404 "no such Pixelcast worker\\n";
        }}
        proxy_pass http://$pixelcast_worker_address;
    }}

    location / {{
        proxy_pass http://pixelcast_workers;
        # a full worker answers 503: offer the new session to the next one (POST included)
        proxy_next_upstream error timeout http_503 non_idempotent;
        proxy_next_upstream_tries 0;
    }}
}}
"""


def nginx_main(site: str, directory: str, *, user: str | None = None) -> str:
    """A whole ``nginx.conf`` around ``site`` that keeps every file under ``directory`` (for a demo or test)."""
    user_line = f"user {user};\n" if user else ""
    return f"""{user_line}daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;

events {{
    worker_connections 512;
}}

http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

{site}}}
"""


def _worker_address(text: str) -> tuple[str, str]:
    worker_id, sep, address = text.partition("=")
    if not sep or ":" not in address:
        raise argparse.ArgumentTypeError(f"expected <worker id>=<host>:<port>, got {text!r}")
    try:
        return check_worker_id(worker_id), address
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `pixelcast nginx-config`."""
    parser.add_argument(
        "workers",
        nargs="+",
        type=_worker_address,
        metavar="ID=HOST:PORT",
        help="each worker: its --worker-id and where it listens, e.g. w1=10.0.0.11:8000",
    )
    parser.add_argument("--listen", default="80", help="what nginx listens on (default 80)")
    parser.add_argument("--resolver", help="DNS server for workers named by host name (Kubernetes: kube-dns)")


def main(args: argparse.Namespace) -> int:
    """Print the site configuration for the workers given (for /etc/nginx/conf.d/pixelcast.conf)."""
    print(nginx_site(dict(args.workers), listen=args.listen, resolver=args.resolver), end="")
    return 0
