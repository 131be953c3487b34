"""Database tables (SQLAlchemy Core): current resources, older versions and the search index."""
from __future__ import annotations

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()


class Content(TypeDecorator):
    """A resource's JSON: raw bytes in SQLite, JSONB in PostgreSQL (read back as text, not parsed)."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "postgresql":
            return value
        return orjson.loads(value) if isinstance(value, (bytes, bytearray, str)) else value

# Current version of every resource (a deleted resource keeps a row with deleted=1 and no content).
resources = Table(
    "resources",
    metadata,
    # rid: a compact surrogate key the index rows point at (assigned by the writer, see db.Transaction)
    Column("rid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", Float, nullable=False),  # epoch seconds, UTC
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Content, nullable=True),  # canonical JSON bytes
)
Index("ux_resources_key", resources.c.res_type, resources.c.res_id, unique=True)
Index("ix_resources_type_updated", resources.c.res_type, resources.c.last_updated)

# Every version that is no longer current (creates write only `resources`; an update moves the old row here).
history = Table(
    "history",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("last_updated", Float, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),
    Column("content", Content, nullable=True),
)
Index("ix_history_type_updated", history.c.res_type, history.c.last_updated)


def _index_table(name: str, *columns: Column) -> Table:
    t = Table(
        name,
        metadata,
        Column("rid", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
    )
    Index(f"ix_{name}_owner", t.c.rid)
    return t


idx_token = _index_table("idx_token", Column("system", Text), Column("code", Text))
Index("ix_idx_token_lookup", idx_token.c.res_type, idx_token.c.param, idx_token.c.code)

idx_string = _index_table("idx_string", Column("norm", Text), Column("exact", Text))
Index("ix_idx_string_lookup", idx_string.c.res_type, idx_string.c.param, idx_string.c.norm)

idx_date = _index_table("idx_date", Column("low", Float), Column("high", Float))
Index("ix_idx_date_lookup", idx_date.c.res_type, idx_date.c.param, idx_date.c.low)

idx_reference = _index_table(
    "idx_reference", Column("target_type", String(64)), Column("target_id", String(64)), Column("url", Text)
)
Index("ix_idx_reference_lookup", idx_reference.c.target_id, idx_reference.c.target_type, idx_reference.c.param)
Index("ix_idx_reference_url", idx_reference.c.url)

idx_uri = _index_table("idx_uri", Column("value", Text))
Index("ix_idx_uri_lookup", idx_uri.c.res_type, idx_uri.c.param, idx_uri.c.value)

idx_number = _index_table("idx_number", Column("value", Float), Column("system", Text), Column("code", Text))
Index("ix_idx_number_lookup", idx_number.c.res_type, idx_number.c.param, idx_number.c.value)

INDEX_TABLES = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "reference": idx_reference,
    "uri": idx_uri,
    "number": idx_number,
}

# PostgreSQL hands out rids in blocks from this sequence; SQLite's single writer counts from max(rid).
rid_sequence = Sequence("resources_rid_seq", metadata=metadata)

# Bumped in the same transaction as any write of a knowledge artifact, so every worker process
# notices and reloads its compiled knowledge.
knowledge_epoch = Table(
    "knowledge_epoch",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("epoch", Integer, nullable=False),
)

# The server's signing key for access tokens, shared by every worker.
auth_keys = Table(
    "auth_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_pem", Text, nullable=False),
    Column("created", Float, nullable=False),
)

# The secret that signs patient links (app/auth/links.py) when none is configured, shared by every worker.
web_secrets = Table(
    "web_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
    Column("created", Float, nullable=False),
)

# Revoked patient links: "jti:<link id>" (one link) or "iss:<CDS issuer>" (every link minted for that caller
# before `revoked`). Checked whenever a link is opened or submitted (app/auth/links.py).
link_revocations = Table(
    "link_revocations",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("revoked", Float, nullable=False),
)

# The jti of every client JWT accepted (SMART client assertions and CDS Hooks calls alike), until it
# expires: one replay check shared by all gunicorn workers (app/auth/client_jwt.py).
client_jti = Table(
    "client_jti",
    metadata,
    Column("key", String(300), primary_key=True),  # sha256(iss)[:32] + ":" + jti
    Column("expires", Float, nullable=False),
)
Index("ix_client_jti_expires", client_jti.c.expires)
