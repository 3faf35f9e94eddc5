"""PostgreSQL as the store (`tapgate_postgres`): schema, writing and reading."""
