"""What ``doctor`` reports: findings, each with its level and, for a problem, its fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Finding", "Level"]

Level = Literal["ok", "info", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    check: str
    detail: str
    fix: str | None = None

    @property
    def problem(self) -> bool:
        return self.level in ("warn", "fail")
