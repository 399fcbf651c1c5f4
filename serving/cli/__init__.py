"""`valuation`: the operator's command line (console script `valuation = serving.cli.main:app`).

    valuation keys create --owner alice --role predict   # the key alone on the last line
    valuation keys list
    valuation keys revoke 1a2b3c4d5e6f
    valuation promote 7 --alias champion --reason "beats v6 on March data"
    valuation status

- main.py: the `valuation` command and its groups;
- keys.py: `valuation keys` (API keys in Vault); vault_choice.py: which Vault it talks to;
- registry.py: `valuation promote` and `valuation status` (the MLflow registry);
- output.py: errors, exit codes and tables; audit.py: the audit-trail line of each operation.

Errors go to stderr with a non-zero exit: 1 for failures (Vault unreachable, unknown key or
version), 2 for bad usage (unknown role).
"""
