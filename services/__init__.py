"""HTTP services: ingest (documents in) and query (answers out), alone or together in one process (services.app)."""
