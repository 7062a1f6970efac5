"""Identity: a user is (issuer, subject); server-to-server API keys.

``users.issuer`` is who vouches for ``sub``: ``coachpay`` for the tokens
coachpay mints itself (``coachpay token``, the demo), the identity provider's
``iss`` for its access tokens. The same ``sub`` under two issuers is two people.

``api_keys`` hold only the SHA-256 of a random key (``cpk_`` + 256 random
bits: a fast hash is enough for a key nobody can guess) and a prefix to find
and show it by.

Revision ID: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SCHEMA = r"""
ALTER TABLE users ADD COLUMN issuer VARCHAR(255) NOT NULL DEFAULT 'coachpay'
    CHECK (length(issuer) BETWEEN 1 AND 255);
ALTER TABLE users DROP CONSTRAINT uq_users_sub;
ALTER TABLE users ADD CONSTRAINT uq_users_issuer_sub UNIQUE (issuer, sub);

CREATE TABLE api_keys (
    id            BIGSERIAL PRIMARY KEY,
    name          VARCHAR(100) NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix        VARCHAR(16) NOT NULL,
    key_hash      BYTEA NOT NULL CHECK (length(key_hash) = 32),
    roles         VARCHAR(16)[] NOT NULL
        CHECK (cardinality(roles) >= 1
               AND roles <@ ARRAY['mentee', 'coach', 'finance', 'admin']::VARCHAR(16)[]),
    created_by    BIGINT REFERENCES users (id),
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    CONSTRAINT uq_api_keys_prefix UNIQUE (prefix)
);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS api_keys;
ALTER TABLE users DROP CONSTRAINT uq_users_issuer_sub;
ALTER TABLE users ADD CONSTRAINT uq_users_sub UNIQUE (sub);
ALTER TABLE users DROP COLUMN issuer;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DOWNGRADE)
