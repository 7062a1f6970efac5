"""Reserved revision 0012 (observability); no schema change yet.

Revision ID: 0012
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
