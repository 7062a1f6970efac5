"""Outgoing events: the transactional outbox, webhook endpoints and their delivery.

See core/outbox/README.md. Events are written by PostgreSQL triggers
(migration 0013); ``delivery`` sends them, signed (``signing``), to the
endpoints admins registered (``endpoints``), at addresses ``ssrf`` allows.
"""
