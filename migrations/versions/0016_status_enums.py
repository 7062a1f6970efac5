"""Reserved revision 0016 (status enums); no schema change yet.

Revision ID: 0016
"""

from __future__ import annotations

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
