"""Placeholder while the module is written."""


class AsyncSemanticCache:
    pass
