"""reports: SeguriChat reports, their messages, media and channels; report alerts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 00:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LIVE = "status IN ('open', 'acknowledged', 'dispatched')"
LIVE_NOT_REPORT = LIVE + " AND kind <> 'report'"


def upgrade() -> None:
    op.create_table(
        "report_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_channels")),
        sa.UniqueConstraint("name", name=op.f("uq_report_channels_name")),
    )
    op.create_table(
        "report_channel_members",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["report_channels.id"],
            name=op.f("fk_report_channel_members_channel_id_report_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_report_channel_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel_id", "user_id", name=op.f("pk_report_channel_members")),
    )
    with op.batch_alter_table("report_channel_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_channel_members_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("folio", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("place", sa.String(length=300), nullable=True),
        sa.Column("position_source", sa.String(length=20), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("trip_id", sa.String(length=36), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("reporter_user_id", sa.Integer(), nullable=True),
        sa.Column("reporter_name", sa.String(length=200), nullable=True),
        sa.Column("reporter_contact", sa.String(length=100), nullable=True),
        sa.Column("wa_phone_number_id", sa.String(length=50), nullable=True),
        sa.Column("wa_sender", sa.String(length=100), nullable=True),
        sa.Column("wa_reply_to", sa.String(length=100), nullable=True),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["report_channels.id"],
            name=op.f("fk_reports_channel_id_report_channels"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reporter_user_id"],
            ["users.id"],
            name=op.f("fk_reports_reporter_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"], ["trips.id"], name=op.f("fk_reports_trip_id_trips"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint("folio", name=op.f("uq_reports_folio")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_channel_id"), ["channel_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reports_trip_id"), ["trip_id"], unique=False)
        batch_op.create_index(
            "ix_reports_wa_sender_status",
            ["wa_phone_number_id", "wa_sender", "status"],
            unique=False,
        )

    op.create_table(
        "report_media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("content_type", sa.String(length=60), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=200), nullable=False),
        sa.Column("redacted_key", sa.String(length=200), nullable=True),
        sa.Column("redacted_sha256", sa.String(length=64), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_report_media_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_media")),
    )
    with op.batch_alter_table("report_media", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_media_report_id"), ["report_id"], unique=False)

    op.create_table(
        "report_messages",
        sa.Column("wamid", sa.String(length=200), nullable=False),
        sa.Column(
            "report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_report_messages_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("wamid", name=op.f("pk_report_messages")),
    )
    with op.batch_alter_table("report_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_messages_report_id"), ["report_id"], unique=False
        )

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.alter_column("trip_id", existing_type=sa.VARCHAR(length=36), nullable=True)
        batch_op.create_index(batch_op.f("ix_alerts_report_id"), ["report_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_alerts_report_id_reports"),
            "reports",
            ["report_id"],
            ["id"],
            ondelete="CASCADE",
        )
        # Each report is its own alert: the one-live-alert-per-trip-and-kind rule skips them.
        batch_op.drop_index("uq_alerts_open_trip_kind")
        batch_op.create_index(
            "uq_alerts_open_trip_kind",
            ["trip_id", "kind"],
            unique=True,
            postgresql_where=sa.text(LIVE_NOT_REPORT),
            sqlite_where=sa.text(LIVE_NOT_REPORT),
        )


def downgrade() -> None:
    op.execute("DELETE FROM alerts WHERE kind = 'report'")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("uq_alerts_open_trip_kind")
        batch_op.create_index(
            "uq_alerts_open_trip_kind",
            ["trip_id", "kind"],
            unique=True,
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )
        batch_op.drop_constraint(batch_op.f("fk_alerts_report_id_reports"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_alerts_report_id"))
        batch_op.alter_column("trip_id", existing_type=sa.VARCHAR(length=36), nullable=False)
        batch_op.drop_column("report_id")

    with op.batch_alter_table("report_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_messages_report_id"))

    op.drop_table("report_messages")
    with op.batch_alter_table("report_media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_media_report_id"))

    op.drop_table("report_media")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_wa_sender_status")
        batch_op.drop_index(batch_op.f("ix_reports_trip_id"))
        batch_op.drop_index(batch_op.f("ix_reports_channel_id"))

    op.drop_table("reports")
    with op.batch_alter_table("report_channel_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_channel_members_user_id"))

    op.drop_table("report_channel_members")
    op.drop_table("report_channels")
