"""API keys: creation, verification, listing and revocation.

A key is `pv_` + 43 random URL-safe characters. Only its SHA-256 hash is stored; `key_id` (the
first 12 hex digits of the hash) is the public name of a key: it is what logs show and what
`revoke` takes.

- records.py: the key format, hashing, records and the stored table;
- store.py: the `ApiKeyStore` interface the proxy and the CLI use, and its errors;
- env_store.py: without Vault, the single admin key in env API_KEY;
- vault_store.py: keys in a Vault KV v2 secret, with API_KEY seeded as an admin key;
- cache.py: the Vault store's in-memory table and when it is read again;
- factory.py: the store the settings ask for.
"""
