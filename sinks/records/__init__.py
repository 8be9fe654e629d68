"""The store of record on PostgreSQL: weighings, cases (案件) and their append-only history,
notices and handovers, kept without expiry (``migrations/`` holds the schema, ``migrate`` applies
it, ``case_store`` writes it)."""
