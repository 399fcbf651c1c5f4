"""The monitoring job and what it needs around it: reading the prediction store
(`store_reader`), the served version's reference profile (`reference`), the run itself (`job`),
its plots, its figures for the proxies' /metrics (`metrics`), the retraining it may enqueue
(`retraining`) and its schedule on RQ (`schedule`). The statistics are in valuation/monitoring/.
"""
