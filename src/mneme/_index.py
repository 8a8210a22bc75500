"""Placeholder while the module is written."""


class Index:
    pass
