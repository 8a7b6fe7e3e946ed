"""Row writers: PostgreSQL (COPY) and SQLite (executemany); DDL and identifier quoting.

The importer lands parts inside its own transactions, next to its ledger writes, so
the writers are functions on a connection the caller owns:

- ``tdtp.sinks.postgres``   ``copy_lines`` / ``copy_rows``: one ``COPY FROM STDIN`` per call
                            (``PostgresSink`` wraps them with a connection of its own)
- ``tdtp.sinks.copy_text``  row lines -> PostgreSQL COPY text, without parsing values
- ``tdtp.sinks.sqlite``     ``stored_values`` (row lines -> what SQLite stores) and
                            ``write_rows``
- ``tdtp.sinks.ddl``        ``CREATE TABLE`` from a schema, quoting of identifiers
"""
