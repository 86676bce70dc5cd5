"""The catalog and its sessions: the SQLAlchemy models, the connection lifecycle, accounts, CSV rules and bulk SQLite writes."""
