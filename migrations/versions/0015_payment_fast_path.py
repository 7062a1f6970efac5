"""Reserved revision 0015 (payment fast path); no schema change yet.

Revision ID: 0015
"""

from __future__ import annotations

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
