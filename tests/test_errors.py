"""mnist_core.errors: the package's exception types and the one-line wording of other errors."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from mnist_core.errors import first_line


def test_first_line_is_an_errors_first_line_within_its_limit():
    assert first_line(ValueError("  bad value\n  Traceback details\n")) == "bad value"
    assert first_line(RuntimeError("x" * 500)) == "x" * 300
    assert first_line(RuntimeError("abcdef"), limit=3) == "abc"
    assert first_line("job failed\nstack") == "job failed"


def test_an_error_without_words_is_named_by_its_type():
    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line(RuntimeError(" \n ")) == "RuntimeError"


def test_a_database_error_gives_the_databases_words_without_the_statement():
    exc = sa.exc.OperationalError("SELECT id FROM registry", {}, sqlite3.OperationalError("database is locked"))
    assert "SELECT" in str(exc) and first_line(exc) == "database is locked"
