"""Drift and live-error monitoring, as pure computations on numpy and scipy (no I/O):

- `profile`: the reference profile a version logs at evaluation (aggregates only);
- `drift`: PSI, KS, Wasserstein, Jensen-Shannon and category changes of a window of traffic;
- `live_error`: MAE, MdAPE, PPE10 and RMSE on rows with feedback, against the test figures;
- `policy`: whether a monitoring run's figures call for retraining, and why.

The monitoring job that reads the prediction store and publishes the results is in
serving/monitoring/.
"""
