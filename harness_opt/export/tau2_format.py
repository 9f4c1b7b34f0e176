"""submission.json of a τ²-bench leaderboard bundle, as our own pydantic models of τ²'s
`tau2/scripts/leaderboard/submission.py` (commit a2c0247; its schema.json is generated from them).

A text submission is a folder `<model>_<organization>_<date>/` holding submission.json (model,
submitter, pass^1..4 per domain in percent, mean cost, methodology) and `trajectories/` with one
τ² results file per domain (`tau2_models.Results`). Field names, types and bounds are τ²'s; voice
submission fields are left out, and unknown fields are refused (τ² ignores them at the top level).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness_opt.errors import UserError

SUBMISSION_FILE = "submission.json"
TRAJECTORIES_DIR = "trajectories"
DOMAINS = ("retail", "airline", "telecom", "banking_knowledge")


class ExportError(UserError):
    """A bundle that would be refused by the leaderboard, or export options that cannot make one."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactInfo(_Strict):
    email: str | None = None
    name: str | None = None
    github: str | None = None


class DomainResults(_Strict):
    pass_1: float | None = Field(default=None, ge=0, le=100, description="pass^1 in percent.")
    pass_2: float | None = Field(default=None, ge=0, le=100, description="pass^2 in percent.")
    pass_3: float | None = Field(default=None, ge=0, le=100, description="pass^3 in percent.")
    pass_4: float | None = Field(default=None, ge=0, le=100, description="pass^4 in percent.")
    cost: float | None = Field(default=None, ge=0, description="Mean agent USD per trajectory.")
    retrieval_config: str | None = Field(default=None, description="banking_knowledge only.")


class Results(_Strict):
    retail: DomainResults | None = None
    airline: DomainResults | None = None
    telecom: DomainResults | None = None
    banking_knowledge: DomainResults | None = None

    @model_validator(mode="after")
    def _banking_needs_retrieval(self) -> Results:
        if self.banking_knowledge is not None and self.banking_knowledge.retrieval_config is None:
            raise ValueError("banking_knowledge results require retrieval_config")
        return self

    def domain(self, name: str) -> DomainResults | None:
        return getattr(self, name) if name in DOMAINS else None


class Reference(_Strict):
    title: str
    url: str
    type: str | None = Field(
        default=None, description="paper, blog_post, documentation, model_card, github, huggingface, other"
    )


class ModelRelease(_Strict):
    release_date: date | None = None
    announcement_url: str | None = None
    announcement_title: str | None = None

    @model_validator(mode="after")
    def _url_needs_date(self) -> ModelRelease:
        if self.announcement_url is not None and self.release_date is None:
            raise ValueError("model_release.announcement_url needs model_release.release_date")
        return self


class Verification(_Strict):
    modified_prompts: bool | None = None
    omitted_questions: bool | None = None
    details: str | None = None


class Methodology(_Strict):
    evaluation_date: date | None = None
    tau2_bench_version: str | None = None
    user_simulator: str | None = Field(default=None, description="Text: the user simulator's model.")
    notes: str | None = None
    verification: Verification | None = None


class Submission(_Strict):
    """submission.json (τ²'s `Submission`, text modality)."""

    model_name: str
    model_organization: str
    submitting_organization: str
    submission_date: date
    submission_type: Literal["standard", "custom"] = "standard"
    modality: Literal["text", "voice"] = "text"
    contact_info: ContactInfo
    results: Results
    is_new: bool = False
    trajectories_available: bool = False
    trajectory_files: dict[str, str] | None = None
    references: list[Reference] | None = None
    methodology: Methodology | None = None
    model_release: ModelRelease | None = None
    reasoning_effort: str | None = None
