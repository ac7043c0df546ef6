"""The preference store's tables (SQLAlchemy 2 ORM) and their additive migration.

clips   one generated clip: prompt, model, every parameter, seed, the content-addressed WAV
pairs   a blind A/B pair issued to one browser session; ``secret_sha256`` is the hash of the pair
        token's secret half, which only the session that received the pair ever sees. A rater
        consistency repeat (``app/repeats.py``) has ``repeat_of`` = the original pair's id and
        ``swapped`` = True (its clip A is a copy of the original's clip B and vice versa)
votes   append-only (database triggers refuse UPDATE and DELETE); one vote per pair (UNIQUE);
        ``simulated`` = cast by a simulated listener (a client's claim; NULL in older stores = False)

Migration: :func:`migrate` creates missing tables and adds columns that a newer version declares
but an existing database lacks (nullable, so old rows stay valid). Columns are never renamed or
dropped, so that is all a store written by an older musicrl needs; a one-line rule instead of
Alembic's migration scripts, for a schema that only ever grows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DDL, JSON, BigInteger, CheckConstraint, DateTime, ForeignKey, String, Text, event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

FEEDBACK_MAX_CHARS = 2000  # hard cap, also a CHECK constraint; a Store may choose a lower limit
ID_MAX = 128  # session, rater, model ids


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class ClipRow(Base):
    __tablename__ = "clips"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(ID_MAX), index=True)
    checkpoint_hash: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]]
    seed: Mapped[int | None] = mapped_column(BigInteger)
    audio_sha256: Mapped[str] = mapped_column(String(64), index=True)
    audio_path: Mapped[str] = mapped_column(String(256))  # relative to data_dir
    sample_rate: Mapped[int]
    duration: Mapped[float]
    created_at: Mapped[datetime]


class PairRow(Base):
    __tablename__ = "pairs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random; public half of the pair token
    clip_a: Mapped[str] = mapped_column(ForeignKey("clips.id"))
    clip_b: Mapped[str] = mapped_column(ForeignKey("clips.id"))
    session_id: Mapped[str] = mapped_column(String(ID_MAX), index=True)
    issued_at: Mapped[datetime]
    prompt: Mapped[str] = mapped_column(Text)
    # sha256 of the token's secret half; NULL for imported pairs and pairs issued before tokens existed
    secret_sha256: Mapped[str | None] = mapped_column(String(64))
    # rater consistency repeats: the original pair's id (not a foreign key: an import may hold the repeat
    # without its original) and whether the sides are swapped; NULL for ordinary pairs and older stores
    repeat_of: Mapped[str | None] = mapped_column(String(64), index=True)
    swapped: Mapped[bool | None]


class VoteRow(Base):
    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint("choice IN ('a', 'b', 'tie', 'both_bad')", name="ck_votes_choice"),
        CheckConstraint(f"length(feedback) <= {FEEDBACK_MAX_CHARS}", name="ck_votes_feedback_length"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    pair_id: Mapped[str] = mapped_column(ForeignKey("pairs.id"), unique=True)
    choice: Mapped[str] = mapped_column(String(8))
    rater_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    listened_a_s: Mapped[float]
    listened_b_s: Mapped[float]
    feedback: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    simulated: Mapped[bool | None]  # NULL (older stores) = a person's vote


# Append-only votes, enforced by the database itself.
for _ddl in (
    "CREATE TRIGGER votes_no_update BEFORE UPDATE ON votes "
    "BEGIN SELECT RAISE(ABORT, 'votes are append-only'); END",
    "CREATE TRIGGER votes_no_delete BEFORE DELETE ON votes "
    "BEGIN SELECT RAISE(ABORT, 'votes are append-only'); END",
):
    event.listen(VoteRow.__table__, "after_create", DDL(_ddl).execute_if(dialect="sqlite"))
for _ddl in (
    "CREATE OR REPLACE FUNCTION musicrl_votes_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'votes are append-only'; END $$",
    "CREATE TRIGGER votes_append_only BEFORE UPDATE OR DELETE ON votes "
    "FOR EACH ROW EXECUTE FUNCTION musicrl_votes_append_only()",
):
    event.listen(VoteRow.__table__, "after_create", DDL(_ddl).execute_if(dialect="postgresql"))


def migrate(connection: Connection) -> list[str]:
    """Create missing tables, then add declared columns an older database lacks. Returns "table.column"
    for each column added (nullable: rows written before stay as they were)."""
    Base.metadata.create_all(connection)
    existing = inspect(connection)
    added = []
    for table in Base.metadata.sorted_tables:
        present = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"cannot add the required column {table.name}.{column.name} to an existing store")
            kind = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
            added.append(f"{table.name}.{column.name}")
    return added
