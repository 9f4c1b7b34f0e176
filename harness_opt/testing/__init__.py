"""Test doubles that ship with the library, so users' tests and ours exercise the real litellm path."""

from __future__ import annotations

from harness_opt.testing.scripted import (
    Fail,
    ScriptedCall,
    ScriptedModel,
    register_scripted,
    scripted_model,
    unregister_scripted,
)

__all__ = [
    "Fail",
    "ScriptedCall",
    "ScriptedModel",
    "register_scripted",
    "scripted_model",
    "unregister_scripted",
]
