"""Check lines shared by `doctor` and `premortem`: PASS / WARN / FAIL, what was found, and the fix."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["PASS", "WARN", "FAIL"]


class CheckLine(BaseModel):
    status: Status
    check: str = Field(description="Short name of the check, e.g. 'splits', 'sandbox'.")
    detail: str = Field(description="What was found, with figures.")
    fix: str = Field(default="", description="What to do about a WARN or FAIL.")

    def render(self) -> str:
        text = f"{self.status:4}  {self.check:<12} {self.detail}"
        return text + (f"\n      fix: {self.fix}" if self.fix and self.status != "PASS" else "")


class CheckReport(BaseModel):
    title: str
    lines: list[CheckLine] = Field(default_factory=list)

    def add(self, status: Status, check: str, detail: str, fix: str = "") -> None:
        self.lines.append(CheckLine(status=status, check=check, detail=detail, fix=fix))

    @property
    def failed(self) -> bool:
        return any(line.status == "FAIL" for line in self.lines)

    @property
    def ok(self) -> bool:
        return not self.failed

    def render(self) -> str:
        return "\n".join([self.title, *(line.render() for line in self.lines)])
