"""The local development launcher: `make stack` (`python -m serving.devstack`) runs the whole
topology on loopback, in the foreground. It is not how the service is deployed (see docker/).

Starts, in order, each waited for until it answers: the MLflow tracking server on the store
`make train` writes to, Redis (an already running one is used as is), an OpenBao dev server
bootstrapped by `serving.vault_init` (the proxy gets AppRole credentials, never the root token),
the RQ worker, and the proxy (whose lifespan starts the model-server supervisor). Ctrl-C or
SIGTERM stops everything in reverse order; every child runs in its own process group with a
parent-death signal, so nothing outlives the stack. State and logs go under `.stack/`.

- `plan`: which store, artifact directory and ports, resolved before anything starts.
- `part`: one child process of the stack (start, stop, log tail).
- `services`: how each service is started and known to be ready.
- `probes`: the readiness checks (HTTP, Redis PING, RQ worker registered) and tool lookups.
- `replicas`: `--proxies N` (N > 1): the proxy replicas and the balancer in front of them.
- `balancer`: nginx's generated configuration and command line.
- `launcher`: the run itself: start in order, watch, stop in reverse order, state file, summary.
- `__main__`: the command line.
"""
