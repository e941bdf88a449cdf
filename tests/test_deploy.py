"""deploy/ is what `pixelcast nginx-config` makes, and nginx accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks.deployment import find_program
from streamer.nginx import nginx_main, nginx_site

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S_WORKER = "pixelcast-{n}.pixelcast-workers.pixelcast.svc.cluster.local:8000"
KUBE_DNS = "kube-dns.kube-system.svc.cluster.local"


def test_the_reference_nginx_site_is_what_nginx_config_makes() -> None:
    expected = nginx_site({"w1": "127.0.0.1:8001", "w2": "127.0.0.1:8002"})
    assert (DEPLOY / "nginx" / "pixelcast.conf").read_text() == expected


def test_the_kubernetes_proxy_config_is_what_nginx_config_makes() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "proxy.yaml").read_text()))
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    workers = {f"pixelcast-{n}": K8S_WORKER.format(n=n) for n in (0, 1)}
    assert config_map["data"]["pixelcast.conf"] == nginx_site(workers, listen="8080", resolver=KUBE_DNS)
    statefulset = next(d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "workers.yaml").read_text())
                       if d["kind"] == "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--worker-id=$(POD_NAME)" in container["args"]


@pytest.mark.skipif(find_program("nginx") is None, reason="nginx not installed; `make test` installs it")
def test_nginx_accepts_the_reference_site(tmp_path: Path) -> None:
    site = (DEPLOY / "nginx" / "pixelcast.conf").read_text().replace("listen 80;", "listen 127.0.0.1:18080;")
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_main(site, str(tmp_path)))
    result = subprocess.run(
        [str(find_program("nginx")), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
