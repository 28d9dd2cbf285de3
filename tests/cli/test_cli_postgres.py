"""The command line on a PostgreSQL store it cannot reach: one line saying what to check."""

from __future__ import annotations

STORE = 5


def test_an_unreachable_or_refusing_server_is_one_line_and_shows_no_password(pg_server,
                                                                              cli) -> None:
    down, missing = cli.many(
        ["runs", "--db", "postgresql://agent:hunter2-secret@127.0.0.1:1/agents"],
        ["show", "r1", "--db", pg_server.url("no_such_db")])
    cli.assert_error(down, STORE, "cannot connect", "is the server running")
    assert "hunter2" not in down.stdout + down.stderr
    cli.assert_error(missing, STORE, "no_such_db", "createdb")
