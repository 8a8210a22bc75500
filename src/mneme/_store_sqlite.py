"""Placeholder while the module is written."""


class SQLiteStore:
    pass
