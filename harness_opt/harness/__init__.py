"""Harness versions: the manifest, loading and validation, the content hash, and lineage."""

from harness_opt.harness.lineage import create_version, lineage, resolve_version
from harness_opt.harness.manifest import HarnessManifest
from harness_opt.harness.version import HarnessVersion

__all__ = ["HarnessManifest", "HarnessVersion", "create_version", "lineage", "resolve_version"]
