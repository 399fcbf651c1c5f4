"""Shadow and canary traffic for the challenger.

- `settings`: the `traffic:` section of conf/serving.yaml, typed;
- `split`: the fractions in force (the config's, or the run-time setting kept in Redis that
  `valuation traffic set` writes, shared by every proxy replica);
- `switch`: each proxy's cached copy of the split, refreshed in the background, and the
  challenger's model server asked for while either fraction is on;
- `routing`: per /predict request, who answers (champion or canary) and what is priced in the
  background (shadow);
- `metrics`: the fractions and the requests per served alias, for Prometheus.
"""
