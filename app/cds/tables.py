"""The CDS service's own tables (SQLAlchemy Core on the store's metadata): issued cards and feedback.

The replay cache of client JWTs is the one all flows share (`app.store.schema.client_jti`).
"""
from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text

from app.store.schema import metadata

# What each card said, so that feedback (which names only the card uuid) can be queried by rule and indicator.
cds_card = Table(
    "cds_card",
    metadata,
    Column("uuid", String(64), primary_key=True),
    Column("service", String(100), nullable=False),
    Column("variant", String(40), nullable=False),
    Column("rule", String(40), nullable=True),  # source.topic code
    Column("rules", Text, nullable=True),  # every contributing rule id, space separated
    Column("indicator", String(16), nullable=False),
    Column("issued", Float, nullable=False),
)

# One row per feedback item; the unique key makes a repeated POST idempotent.
cds_feedback = Table(
    "cds_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(100), nullable=False),
    Column("card", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("accepted_suggestions", Text, nullable=True),  # JSON list of suggestion uuids
    Column("override_code", String(100), nullable=True),
    Column("override_system", String(255), nullable=True),
    Column("override_display", Text, nullable=True),
    Column("user_comment", Text, nullable=True),
    Column("client", String(300), nullable=True),  # the JWT iss that sent it
    Column("received", Float, nullable=False),
)
Index("ux_cds_feedback_once", cds_feedback.c.card, cds_feedback.c.outcome, cds_feedback.c.outcome_timestamp,
      unique=True)

TABLES = [cds_card, cds_feedback]


def create_tables(engine) -> None:
    metadata.create_all(engine, tables=TABLES)
