"""The multi-replica plan and the balancer's generated nginx configuration, checked by nginx itself
(`nginx -t`), without starting the stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from serving.devstack.balancer import prepare_nginx
from serving.devstack.part import StackError
from serving.devstack.plan import plan_stack
from valuation.config import load_config


def plan(*overrides: str):
    settings = load_config([f"stack.backend_store_uri=sqlite:///{Path('x.db').resolve()}",
                            "proxy.port=8100", *overrides], config_name="serving")
    return plan_stack(settings, {})


def test_replicas_listen_after_the_proxy_port_unless_told_otherwise():
    assert plan().proxies == 1 and plan().model_server_dirs == [plan().model_server_dir]
    two = plan("stack.proxies=2")
    assert two.replica_ports == [8101, 8102] and two.replica_names == ["proxy-1", "proxy-2"]
    assert two.model_server_dirs == [two.model_server_dir / "proxy-1",
                                     two.model_server_dir / "proxy-2"]
    assert plan("stack.proxies=3", "stack.replica_port=9000").replica_ports == [9000, 9001, 9002]


def test_zero_proxies_is_refused_naming_the_setting():
    with pytest.raises(StackError, match=r"stack.proxies \(PROXIES / --proxies\) is 0"):
        plan("stack.proxies=0")


def test_nginx_accepts_the_generated_configuration(tmp_path: Path):
    command = prepare_nginx(load_config(config_name="serving"), "127.0.0.1:18000",
                            ["127.0.0.1:18001", "127.0.0.1:18002"], tmp_path, tmp_path / "error.log")
    assert command[-2:] == ["-g", "daemon off;"]
    # The same nginx, configuration, prefix and log, with -t: check the configuration and exit.
    checked = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True, timeout=30,
                             check=False)
    text = (tmp_path / "nginx.conf").read_text()
    assert checked.returncode == 0, checked.stderr
    for replica in ("127.0.0.1:18001", "127.0.0.1:18002"):
        assert f"server {replica} max_fails=" in text
    # POST /predict may be retried on the other replica after it was sent; other POSTs may not.
    predict = text[text.index("location = /predict"):]
    assert "non_idempotent" in predict
    assert "non_idempotent" not in text[:text.index("location = /predict")]
