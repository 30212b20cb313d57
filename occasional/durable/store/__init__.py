"""Where journals live: one interface (:mod:`.base`), two stores (issue 12).

``Store(journal, sync)`` and ``Reader(journal)`` open the store the journal
string names: a ``postgresql://`` or ``postgres://`` URL is a PostgreSQL
journal (:mod:`.postgres`; psycopg 3, imported only then); anything else is
the path of an SQLite journal (:mod:`.sqlite`). Both are imported here, as
that is how they register with :class:`Store` and :class:`Reader`.
"""

from __future__ import annotations

from .base import (
    DEFAULT_SYNC as DEFAULT_SYNC,
    SYNC_MODES as SYNC_MODES,
    Batch as Batch,
    Fenced as Fenced,
    ProcessRow as ProcessRow,
    Reader as Reader,
    Store as Store,
    Written as Written,
    is_postgres as is_postgres,
    journal_name as journal_name,
    shown as shown,
    sqlite_path as sqlite_path,
    store_kind as store_kind,
)
from .postgres import PostgresReader as PostgresReader, PostgresStore as PostgresStore
from .sqlite import SQLiteReader as SQLiteReader, SQLiteStore as SQLiteStore
