"""What the importer writes with, besides its own SQL: COPY text, SQLite writes, DDL and quoting.

The importer lands parts inside its own transactions, next to its ledger writes, so
these are functions on a connection the caller owns:

- ``tdtp.sinks.copy_text``  row lines -> PostgreSQL COPY text, without parsing values
                            (loaded by ``tdtp.importer.pg_copy``, the one COPY FROM path)
- ``tdtp.sinks.sqlite``     ``stored_rows`` / ``stored_chunks`` (row lines -> what SQLite stores) and
                            ``write_rows``
- ``tdtp.sinks.ddl``        ``CREATE TABLE`` from a schema, quoting of identifiers
"""
