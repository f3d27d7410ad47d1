-- One PostgreSQL server, two databases: MLflow's tracking store and Optuna's study storage.
-- Run by the postgres image on first start (docker-entrypoint-initdb.d) and by tests/support/topology.py.
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
