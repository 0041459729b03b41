"""Persistence: SQLAlchemy 2 (async) models and repositories on PostgreSQL + PostGIS
(production) or SQLite (embedded default), with Alembic migrations."""
