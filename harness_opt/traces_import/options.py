"""What an import is told: the name to store under, and where each trace's label comes from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImportOptions:
    """`label` (from `--label`) overrides the file; otherwise `label_field` names the field that holds it."""

    name: str
    label: bool | None = None
    label_field: str = "label"
