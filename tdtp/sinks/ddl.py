"""Identifiers and column types for the SQL we build from TDTP schemas.

Table and column names come from packets, i.e. from outside: they are validated and
always double-quoted, never interpolated bare ("hostile input is data",
docs/architecture.md, Principles).
Quoting always, instead of only when needed, also keeps names exact: PostgreSQL folds
unquoted names to lower case, and TDTP names are case-sensitive.

Type mapping is chosen so that a table survives a round trip through TDTP with the
same TDTP types: PostgreSQL types come back from ``tdtp.sources.postgres`` as the
type they were made from, and SQLite declared types come back from
``tdtp.sources.sqlite`` the same way.
"""

from __future__ import annotations

import unicodedata

from tdtp.packet import (
    BLOB,
    BOOLEAN,
    DATE,
    DECIMAL,
    INTEGER,
    REAL,
    TEXT,
    TIMESTAMP,
    Field,
    Schema,
    SchemaError,
)

POSTGRESQL = "postgresql"
SQLITE = "sqlite"
PG_MAX_IDENT_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by the server
PG_MAX_NUMERIC_PRECISION = 1000

# TEXT subtypes that name a PostgreSQL type whose input accepts the TDTP text as is.
PG_TEXT_SUBTYPES = frozenset(
    {"uuid", "json", "jsonb", "inet", "cidr", "macaddr", "interval", "timetz", "xml"}
)

# SQLite keeps DECIMAL in a NUMERIC-affinity column as REAL, i.e. only 15 significant
# digits.  Wider decimals get a declared type with TEXT affinity (it contains "TEXT"),
# which keeps every digit; the SQLite source reads both back as DECIMAL.
SQLITE_EXACT_DECIMAL_DIGITS = 15
SQLITE_DECIMAL_TEXT = "DECIMAL_TEXT"


def check_ident(name: str, *, dialect: str = POSTGRESQL, what: str = "identifier") -> str:
    """Return ``name`` if it can be a quoted identifier, else raise SchemaError naming it."""
    if not isinstance(name, str) or name == "":
        raise SchemaError(f"empty {what} name")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise SchemaError(f"{what} name {name!r} contains control character U+{ord(ch):04X}")
    if dialect == POSTGRESQL and len(name.encode("utf-8")) > PG_MAX_IDENT_BYTES:
        raise SchemaError(
            f"{what} name {name!r} is longer than PostgreSQL's {PG_MAX_IDENT_BYTES} bytes "
            "(the server would truncate it)"
        )
    return name


def quote_ident(name: str, *, dialect: str = POSTGRESQL, what: str = "identifier") -> str:
    """Validate and double-quote one identifier (embedded quotes doubled)."""
    check_ident(name, dialect=dialect, what=what)
    return '"' + name.replace('"', '""') + '"'


def split_qualified(name: str) -> tuple[str | None, str]:
    """Split ``schema.table`` at the first dot that is outside double quotes.

    ``"my.schema"."t"`` style quoting (with ``""`` for a quote) is honoured so a name
    with a dot in it can still be addressed; a bare name without a dot has no schema.
    Text that is not well-formed quoting is taken as one literal name.
    """
    try:
        return _split_qualified(name)
    except ValueError:
        return None, name


def _split_qualified(name: str) -> tuple[str | None, str]:
    parts: list[str] = []
    buf: list[str] = []
    i, n = 0, len(name)
    quoted_any = False
    while i < n:
        ch = name[i]
        if ch == '"' and not buf:
            # a quoted part: up to the closing quote, "" is an embedded quote
            j = i + 1
            while True:
                k = name.find('"', j)
                if k < 0:
                    raise ValueError("unbalanced double quote")
                if k + 1 < n and name[k + 1] == '"':
                    buf.append(name[j : k + 1])
                    j = k + 2
                    continue
                buf.append(name[j:k])
                i = k + 1
                break
            quoted_any = True
            if i < n and name[i] != ".":
                raise ValueError("text after a quoted part")
            continue
        if ch == "." and len(parts) == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    if len(parts) == 1:
        return None, parts[0]
    if not quoted_any and (parts[0] == "" or parts[1] == ""):
        return None, name  # ".x" or "x.": no sensible split, keep it one name
    return parts[0], parts[1]


def qualified(name: str, *, dialect: str = POSTGRESQL) -> str:
    """Quote a possibly schema-qualified table name: ``dw.orders`` -> ``"dw"."orders"``.

    SQLite has no schemas in our URLs, so there the whole text is one name.
    """
    if dialect == SQLITE:
        return quote_ident(name, dialect=dialect, what="table")
    schema, table = split_qualified(name)
    if schema is None:
        return quote_ident(table, what="table")
    return f"{quote_ident(schema, what='schema')}.{quote_ident(table, what='table')}"


# Where the importer keeps its bookkeeping (tdtp.importer.target): the ledger, the exports,
# dead letters and staging tables.  A packet's TableName or a --table must never land there.
BOOKKEEPING_SCHEMA = "tdtp"
BOOKKEEPING_PREFIX = "_tdtp_"


def refuse_reserved(table: str, dialect: str, *, where: str = "") -> None:
    """Raise SchemaError when ``table`` would name the importer's bookkeeping.

    PostgreSQL: anything in schema ``tdtp`` (compared exactly, as a quoted identifier:
    ``qualified`` always quotes, so ``"TDTP"`` is another schema), and a table named
    ``_tdtp_*`` in any schema, since an unqualified name resolves through search_path.
    SQLite: any table named ``_tdtp_*``, the prefix compared without ASCII case as
    SQLite compares names.  Why: a packet that names the ledger could replace it and
    break exactly-once (issue 12, item 2); ``where`` says what named it (``--table``,
    a part).
    """
    if dialect == SQLITE:
        schema, name = None, table
    else:
        schema, name = split_qualified(table)
    head = name[: len(BOOKKEEPING_PREFIX)]
    if head.isascii() and head.lower() == BOOKKEEPING_PREFIX:
        raise SchemaError(
            f"table name {table!r} is reserved: {BOOKKEEPING_PREFIX}* tables are the importer's bookkeeping",
            where=where,
        )
    if schema == BOOKKEEPING_SCHEMA:
        raise SchemaError(
            f"table name {table!r} is reserved: schema {BOOKKEEPING_SCHEMA!r} holds the importer's bookkeeping",
            where=where,
        )


def sql_literal(text: str) -> str:
    """A standard-conforming SQL string literal (for constants we put into SQL, not user values)."""
    if "\x00" in text:
        raise SchemaError(f"NUL character in SQL literal {text!r}")
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------- types


def pg_type(field: Field) -> str:
    """PostgreSQL column type for a TDTP field."""
    t, sub = field.type, field.subtype.lower()
    if t == INTEGER:
        return "bigint"
    if t == REAL:
        return "double precision"
    if t == DECIMAL:
        p, s = field.precision, field.scale
        if 0 < p <= PG_MAX_NUMERIC_PRECISION and 0 <= s <= p:
            return f"numeric({p},{s})"
        return "numeric"
    if t == TEXT:
        if sub in PG_TEXT_SUBTYPES:
            return sub
        if field.length > 0:
            return f"varchar({field.length})"
        return "text"
    if t == BOOLEAN:
        return "boolean"
    if t == DATE:
        return "date"
    if t == TIMESTAMP:
        if sub == "time":
            return "time"
        if sub == "timestamptz" or field.timezone:
            return "timestamptz"
        return "timestamp"
    if t == BLOB:
        return "bytea"
    raise SchemaError(f"no PostgreSQL type for TDTP type {t!r}", where=f"field {field.name!r}")


def sqlite_type(field: Field) -> str:
    """SQLite declared type that ``tdtp.sources.sqlite`` maps back to the same TDTP type."""
    t, sub = field.type, field.subtype.lower()
    if t == INTEGER:
        return "INTEGER"
    if t == REAL:
        return "REAL"
    if t == DECIMAL:
        p, s = field.precision, field.scale
        exact = 0 < p <= SQLITE_EXACT_DECIMAL_DIGITS
        base = "DECIMAL" if exact else SQLITE_DECIMAL_TEXT
        return f"{base}({p},{s})" if p > 0 else base
    if t == TEXT:
        return f"VARCHAR({field.length})" if field.length > 0 else "TEXT"
    if t == BOOLEAN:
        return "BOOLEAN"
    if t == DATE:
        return "DATE"
    if t == TIMESTAMP:
        if sub == "time":
            return "TIME"
        if sub == "timestamptz" or field.timezone:
            return "TIMESTAMPTZ"
        return "TIMESTAMP"
    if t == BLOB:
        return "BLOB"
    raise SchemaError(f"no SQLite type for TDTP type {t!r}", where=f"field {field.name!r}")


def column_list(schema: Schema, *, dialect: str = POSTGRESQL) -> str:
    """``("a", "b", ...)`` for INSERT/COPY, every name validated."""
    return "(" + ", ".join(quote_ident(f.name, dialect=dialect, what="column") for f in schema.fields) + ")"


def create_table_sql(dialect: str, schema: Schema, table: str, *, if_not_exists: bool = True) -> str:
    """CREATE TABLE for ``schema``; key fields become the PRIMARY KEY."""
    if dialect not in (POSTGRESQL, SQLITE):
        raise SchemaError(f"unknown SQL dialect {dialect!r}")
    if not schema.fields:
        raise SchemaError(f"table {table!r} has no fields")
    seen: set[str] = set()
    cols = []
    for f in schema.fields:
        if f.name in seen:
            raise SchemaError(f"table {table!r} has field {f.name!r} twice")
        seen.add(f.name)
        typ = pg_type(f) if dialect == POSTGRESQL else sqlite_type(f)
        cols.append(f"{quote_ident(f.name, dialect=dialect, what='column')} {typ}")
    keys = [quote_ident(k, dialect=dialect, what="column") for k in schema.key_names]
    if keys:
        cols.append(f"PRIMARY KEY ({', '.join(keys)})")
    exists = "IF NOT EXISTS " if if_not_exists else ""
    return f"CREATE TABLE {exists}{qualified(table, dialect=dialect)} ({', '.join(cols)})"
