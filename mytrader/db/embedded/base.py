"""PostgreSQL backend that starts the embedded server before connecting.

Used only when DATABASE_URL is unset. Everything else is Django's (and
django-prometheus's) PostgreSQL backend, so behaviour is the same as on a
real server.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from django_prometheus.db.backends.postgresql import base as prom_base
from psycopg import sql

from mytrader.db.embedded.server import ensure_server


class DatabaseWrapper(prom_base.DatabaseWrapper):
    def get_connection_params(self) -> dict:
        info = ensure_server(Path(self.settings_dict["PGDATA"]))
        params = super().get_connection_params()
        params["host"] = str(info.socket_dir)
        params["port"] = info.port or 5432
        params.setdefault("user", "postgres")
        return params

    def get_new_connection(self, conn_params: dict):
        try:
            return super().get_new_connection(conn_params)
        except psycopg.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise
            self._create_database(conn_params)
            return super().get_new_connection(conn_params)

    @staticmethod
    def _create_database(conn_params: dict) -> None:
        """A fresh data folder has only `postgres`: create the project's database."""
        name = conn_params["dbname"]
        params = {k: v for k, v in conn_params.items() if k in ("host", "port", "user")}
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
