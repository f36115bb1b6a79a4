"""Orchestration: what the Airflow DAGs in ``airflow/dags`` call, and the local Airflow and MLflow UIs.

- ``settings``: the project directory, the jobs, the config file a task uses, the task defaults
  (standard library only: DAG files import it when they are parsed);
- ``operators``: the Spark job operator (``spark-submit`` through the ``spark_default`` connection);
- ``connections``: that connection, built from the reelhouse config;
- ``commands``: the shell commands of the non-Spark steps (training, evaluation, maintenance);
- ``streams``: the long-running streaming jobs, started detached and supervised by pid file;
- ``lag``: how far a stream is behind its topic, from its checkpoint and the broker's end offsets;
- ``registry``: the promotion decision as the model registry records it;
- ``services``: ``make airflow`` / ``make mlflow`` / ``make stop`` (background processes, pid files).

Heavy modules (pyspark, mlflow, confluent-kafka) are imported inside the functions that need them.
"""
