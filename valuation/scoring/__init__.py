"""Batch scoring of a whole portfolio (`valuation score INPUT OUTPUT`).

- inputs.py: what INPUT names (CSV, parquet file, folder of parquet, database table or query),
  read as a stream of Arrow batches;
- model.py: the registered model resolved to one version, with its own row rules;
- rows.py: a batch split into rows the model takes and rejected rows (row number, field, message);
- output.py: the output parquet and the rejected-rows side file, written under temporary names in
  the output's folder and renamed only when the job finished;
- local.py: the default engine, streamed in bounded memory;
- spark.py: the Spark engine, `mlflow.pyfunc.spark_udf` over a Spark DataFrame.
"""
