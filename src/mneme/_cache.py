"""Placeholder while the module is written."""


class SemanticCache:
    pass
