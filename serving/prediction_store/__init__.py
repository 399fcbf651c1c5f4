"""The prediction store: every priced row and every observed price, in a real database.

- `tables`: the SQLAlchemy 2 models (`predictions`, `observations`); `migrations/`: their Alembic
  history, shipped in the package and applied by `migrate.upgrade` (the proxy does it at start-up,
  `valuation store upgrade` on demand).
- `engine`: the database from `prediction_store.url` (SQLite by default, PostgreSQL in production).
- `writer`: the proxy's asynchronous, batched writer with a bounded buffer (off the hot path).
- `feedback`: observed prices checked, matched to their prediction and recorded (POST /feedback and
  `valuation feedback import` share it).
- `queries`: what monitoring reads (a window of predictions, labelled rows) and retention.
"""
