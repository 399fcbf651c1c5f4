"""`make stack` (`python -m serving.devstack`): the command line of the local dev launcher.

Ports and the store come from conf/serving.yaml (env MLFLOW_PORT, PROXY_PORT, REDIS_PORT,
VAULT_PORT, MODEL_SERVER_PORT, PROXIES, PROXY_REPLICA_PORT, STACK_STATE_DIR, MLFLOW_BACKEND_STORE_URI,
MLFLOW_ARTIFACTS_DESTINATION) or from the flags below, which win.
"""

from __future__ import annotations

import argparse
import os
import sys

from serving.devstack.launcher import Stack
from serving.devstack.part import StackError, say
from serving.devstack.plan import plan_stack
from valuation.config import load_config

FLAG_ENV = {  # flag -> the env var that carries it to conf/serving.yaml and to the children
    "mlflow_port": "MLFLOW_PORT",
    "proxy_port": "PROXY_PORT",
    "redis_port": "REDIS_PORT",
    "vault_port": "VAULT_PORT",
    "model_server_port": "MODEL_SERVER_PORT",
    "state_dir": "STACK_STATE_DIR",
    "backend_store_uri": "MLFLOW_BACKEND_STORE_URI",
    "artifacts_destination": "MLFLOW_ARTIFACTS_DESTINATION",
    "proxies": "PROXIES",
    "replica_port": "PROXY_REPLICA_PORT",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.devstack",
        description="Run the whole topology (MLflow, Redis, OpenBao, worker, proxy, model "
                    "servers) on loopback in the foreground. Ctrl-C stops it.",
    )
    parser.add_argument("--state-dir", help="logs and runtime state (env STACK_STATE_DIR, "
                                            "default .stack)")
    parser.add_argument("--backend-store-uri", help="MLflow store (env MLFLOW_BACKEND_STORE_URI;"
                                                    " default: the one `make train` uses)")
    parser.add_argument("--artifacts-destination",
                        help="MLflow artifact directory or bucket, s3://bucket/prefix (env "
                             "MLFLOW_ARTIFACTS_DESTINATION; a bucket also needs "
                             "MLFLOW_S3_ENDPOINT_URL and AWS_* credentials in the env)")
    parser.add_argument("--mlflow-port", type=int, help="env MLFLOW_PORT (5000)")
    parser.add_argument("--proxy-port", type=int, help="env PROXY_PORT (8000)")
    parser.add_argument("--redis-port", type=int, help="env REDIS_PORT (6379)")
    parser.add_argument("--vault-port", type=int, help="env VAULT_PORT (8200)")
    parser.add_argument("--model-server-port", type=int,
                        help="first port for model servers, env MODEL_SERVER_PORT (5001)")
    parser.add_argument("--proxies", type=int,
                        help="proxy replicas behind nginx on the proxy port, env PROXIES (1: "
                             "the proxy alone, no balancer)")
    parser.add_argument("--replica-port", type=int,
                        help="port of the first proxy replica, the others follow, env "
                             "PROXY_REPLICA_PORT (default: proxy port + 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for flag, env_name in FLAG_ENV.items():
        value = getattr(args, flag)
        if value is not None:
            os.environ[env_name] = str(value)
    settings = load_config(config_name="serving")
    try:
        plan = plan_stack(settings, os.environ)
    except StackError as error:
        say(f"FAILED: {error}")
        return 1
    return Stack(settings, plan, os.environ).run()


if __name__ == "__main__":
    sys.exit(main())
