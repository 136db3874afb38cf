-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d).
-- One server, two databases: the shared Optuna study storage and MLflow's backend store.
-- `\gexec` keeps this idempotent even when POSTGRES_DB names one of them.
SELECT 'CREATE DATABASE optuna' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'optuna')\gexec
SELECT 'CREATE DATABASE mlflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')\gexec
