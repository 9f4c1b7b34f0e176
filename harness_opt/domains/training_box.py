"""The sandboxes of one training experiment: train.py, two model servers and the scorer, each its own box.

train.py is model-written code, as untrusted as a harness's agent.py, so each process of an experiment
runs under the runtime's one builder (`runtime.sandbox.bwrap_command`) with a cleared environment, no
network, no capability, the Python install and the system read-only, a size-capped memory-backed /tmp
as its home and working directory, and nothing of the project, the ledger or the home directory:

| box | sees (read-only) | writes | GPU |
|---|---|---|---|
| train | its version's files (/tmp/work), prepare.py, the **train** bytes | /tmp, /dev/shm, a pipe | yes |
| serve (x2) | its version's files (/code), prepare.py, the saved model | /tmp; its pipe to the scorer | yes |
| score | prepare.py, the **val** bytes | its stdout: the result block the runner trusts | no |

No box sees another's files or processes (own mount, pid, ipc and network namespaces each), so nothing
train.py does reaches the val bytes or the scorer's output. The box's program is pid 1 of its pid
namespace: when it ends, the kernel kills every process it left behind, so nothing outlives a step.
The weaker modes (`--isolation unshare`: no network but the whole filesystem; `none`) run the same
commands on host paths, only when named.

`python -m harness_opt.domains.training_box` says what a train box gets here (GPU device nodes, driver
libraries) and whether torch, and CUDA where there is a GPU, work inside it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness_opt.runtime.sandbox import (
    BwrapSpec,
    Isolation,
    _unshare_prefix,  # the runtime's own `unshare` line for the named weaker mode
    bwrap_command,
    minimal_env,
    python_executable,
)

# Where things appear inside the boxes.
BOX_HOME = "/tmp"
BOX_WORK = "/tmp/work"
BOX_FROZEN = "/opt/frozen"
BOX_DATA = "/data"
BOX_MODEL_DIR = "/model"
BOX_CODE = "/code"
PREPARE_FILE = "prepare.py"
TRAIN_FILE = "train.py"

TRAIN_TMP_BYTES = 2 * 1024**3
"""train.py's /tmp (home, working dir, torch.compile and Triton caches): memory-backed, so capped."""
TRAIN_SHM_BYTES = 1024**3
"""/dev/shm of the train box: DataLoader workers pass batches through it."""
SERVE_TMP_BYTES = 512 * 1024**2
SCORE_TMP_BYTES = 64 * 1024**2
_SYSTEM_PREFIXES = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
"""What the builder binds anyway: driver libraries under these need no bind of their own."""
_GPU_SYS = ("/sys/devices", "/sys/bus/pci", "/sys/dev/char", "/sys/module/nvidia")
"""sysfs the CUDA driver and NVML read (PCI topology, NUMA node, driver version): read-only."""
_DRIVER_LIB = re.compile(r"^\s*(lib(?:cuda|nvidia)[^\s]*)\s.*=>\s*(\S+)\s*$")


@dataclass(frozen=True)
class GpuAccess:
    """What a box needs to use the host's NVIDIA GPUs: device nodes, driver library dirs, sysfs."""

    devices: list[str]
    library_dirs: list[str] = field(default_factory=list)
    sys_paths: list[str] = field(default_factory=list)


def nvidia_devices() -> list[str]:
    """The device nodes a CUDA process opens (/dev/nvidia0.., nvidiactl, nvidia-uvm, nvidia-modeset,
    the nvidia-caps dir of MIG), and /dev/dri where present."""
    found = sorted(glob.glob("/dev/nvidia*"))
    return [*found, "/dev/dri"] if found and os.path.isdir("/dev/dri") else found


def driver_library_dirs(ldconfig_output: str | None = None) -> list[str]:
    """Directories of the NVIDIA driver's user-space libraries (libcuda, libnvidia-*) as `ldconfig -p`
    lists them, that the system binds do not already show (a driver under /opt or /run, say)."""
    if ldconfig_output is None:
        exe = shutil.which("ldconfig") or "/sbin/ldconfig"
        try:
            ldconfig_output = subprocess.run(
                [exe, "-p"], capture_output=True, text=True, timeout=20, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
    dirs: set[str] = set()
    for line in ldconfig_output.splitlines():
        match = _DRIVER_LIB.match(line)
        if match is None:
            continue
        for path in (match[2], os.path.realpath(match[2])):
            dirs.add(os.path.dirname(path))
    return sorted(
        d
        for d in dirs
        if os.path.isdir(d) and not any(d == p or d.startswith(p + "/") for p in _SYSTEM_PREFIXES)
    )


def gpu_access() -> GpuAccess | None:
    """The host's GPUs as a box sees them, or None on a machine without NVIDIA device nodes."""
    devices = nvidia_devices()
    if not devices:
        return None
    return GpuAccess(devices, driver_library_dirs(), [p for p in _GPU_SYS if os.path.exists(p)])


@dataclass(frozen=True)
class HostPaths:
    """The experiment's files on the host (a private scratch dir the parent made and will delete)."""

    work: Path
    """The version's files (train.py ...), a copy."""
    prepare: Path
    train_data: Path
    val_data: Path
    model: Path
    homes: Path
    """Per-box home dirs for the weaker modes (bwrap gives each box its own tmpfs instead)."""


@dataclass(frozen=True)
class Step:
    """One process of the experiment: what to start, with what, and which fds it inherits."""

    argv: list[str]
    env: dict[str, str]
    """The environment of what is started (bwrap itself gets a minimal one too: a process keeps the
    environment it was started with, and /proc/<pid>/environ may be readable)."""
    cwd: str | None
    pass_fds: tuple[int, ...]


@dataclass(frozen=True)
class BoxSettings:
    """What every box of one experiment shares: the mode, the GPU, the run's settings for prepare.py."""

    mode: Isolation
    threads: int
    settings: dict[str, str]
    """NANOGPT_TIME_BUDGET, NANOGPT_SEED, NANOGPT_EVAL_TOKENS: the suite's, never the candidate's."""
    cuda_visible_devices: str | None = None
    gpu: GpuAccess | None = None


class Boxes:
    """Command lines of the experiment's boxes under one isolation mode."""

    def __init__(self, paths: HostPaths, settings: BoxSettings) -> None:
        self.paths = paths
        self.s = settings
        self.bwrap = settings.mode == "bwrap"

    # -- the three kinds of box

    def train(self, model_fd: int) -> Step:
        """train.py in its working dir, prepare.py importable, the train bytes, the model pipe."""
        p = self.paths
        env = self._env("train", self.s.threads)
        env |= {
            **self.s.settings,
            "PYTHONPATH": self._where(BOX_FROZEN, p.prepare.parent),
            "NANOGPT_TRAIN_DATA": self._where(f"{BOX_DATA}/train.txt", p.train_data),
            "NANOGPT_MODEL_FD": str(model_fd),
        }
        argv = [python_executable(), "-B", TRAIN_FILE]
        binds = [*self._work_files(BOX_WORK), *self._frozen(), (str(p.train_data), f"{BOX_DATA}/train.txt")]
        spec = BwrapSpec(
            ro_binds=[*binds, *self._gpu_dirs()],
            dev_binds=self._gpu_devices(),
            env=env,
            chdir=BOX_WORK,
            tmp_bytes=TRAIN_TMP_BYTES,
            shm_bytes=TRAIN_SHM_BYTES,
            as_pid_1=True,
            read_only_root=True,
        )
        return self._step(spec, argv, (model_fd,), cwd=p.work)

    def serve(self, fd_in: int, fd_out: int, threads: int) -> Step:
        """A model server: the saved model and the version's files, no data, pipes to the scorer."""
        p = self.paths
        env = self._env("serve", threads) | {
            k: v for k, v in self.s.settings.items() if k != "NANOGPT_TRAIN_DATA"
        }
        model = self._where(f"{BOX_MODEL_DIR}/model.pt", p.model)
        code = self._where(BOX_CODE, p.work)
        argv = [python_executable(), "-B", self._where(f"{BOX_FROZEN}/{PREPARE_FILE}", p.prepare), "serve"]
        argv += ["--model", model, "--code", code, "--fds", f"{fd_in},{fd_out}"]
        binds = [*self._work_files(BOX_CODE), *self._frozen(), (str(p.model), f"{BOX_MODEL_DIR}/model.pt")]
        spec = BwrapSpec(
            ro_binds=[*binds, *self._gpu_dirs()],
            dev_binds=self._gpu_devices(),
            env=env,
            tmp_bytes=SERVE_TMP_BYTES,
            as_pid_1=True,
            read_only_root=True,
        )
        return self._step(spec, argv, (fd_in, fd_out), cwd=p.homes)

    def score(self, real: tuple[int, int], probe: tuple[int, int]) -> Step:
        """The scorer: prepare.py and the val bytes only. Its stdout is the result the runner trusts."""
        p = self.paths
        env = self._env("score", 1) | self.s.settings
        val = self._where(f"{BOX_DATA}/val.txt", p.val_data)
        argv = [python_executable(), "-I", "-B", self._where(f"{BOX_FROZEN}/{PREPARE_FILE}", p.prepare)]
        argv += ["score", "--val", val, "--real", "{},{}".format(*real), "--probe", "{},{}".format(*probe)]
        spec = BwrapSpec(
            ro_binds=[*self._frozen(), (str(p.val_data), f"{BOX_DATA}/val.txt")],
            env=env,
            tmp_bytes=SCORE_TMP_BYTES,
            as_pid_1=True,
            read_only_root=True,
        )
        return self._step(spec, argv, (*real, *probe), cwd=p.homes)

    # -- pieces

    def _where(self, box_path: str, host_path: Path) -> str:
        return box_path if self.bwrap else str(host_path)

    def _work_files(self, dest: str) -> list[tuple[str, str]]:
        """Each version file bound read-only on its own, so the dir around them stays the box's tmpfs."""
        root = self.paths.work
        return [
            (str(f), f"{dest}/{f.relative_to(root).as_posix()}")
            for f in sorted(root.rglob("*"))
            if f.is_file()
        ]

    def _frozen(self) -> list[tuple[str, str]]:
        return [(str(self.paths.prepare), f"{BOX_FROZEN}/{PREPARE_FILE}")]

    def _gpu_devices(self) -> list[tuple[str, str]]:
        return [(d, d) for d in self.s.gpu.devices] if self.s.gpu else []

    def _gpu_dirs(self) -> list[tuple[str, str]]:
        gpu = self.s.gpu
        return [(d, d) for d in (*gpu.library_dirs, *gpu.sys_paths)] if gpu else []

    def _env(self, box: str, threads: int) -> dict[str, str]:
        home = BOX_HOME if self.bwrap else str(self.paths.homes / box)
        env = minimal_env(home) | {
            "USER": "sandbox",  # torch.compile and Triton name their caches after the user
            "LOGNAME": "sandbox",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads),
        }
        if self.s.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.s.cuda_visible_devices
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # indices as nvidia-smi lists them (the executor's)
        return env

    def _step(self, spec: BwrapSpec, argv: list[str], fds: tuple[int, ...], cwd: Path) -> Step:
        if self.bwrap:
            return Step(bwrap_command(spec, argv), minimal_env(BOX_HOME), None, fds)
        home = Path(spec.env["HOME"])
        home.mkdir(parents=True, exist_ok=True)
        prefix = _unshare_prefix() if self.s.mode == "unshare" else []
        return Step([*prefix, *argv], spec.env, str(cwd), fds)


def probe_train_box() -> tuple[bool, str]:
    """Start a train box here and report what torch (and CUDA, where there is a GPU) says inside."""
    import tempfile

    from harness_opt.runtime.sandbox import bwrap_problem

    problem = bwrap_problem()
    if problem is not None:
        return False, f"bubblewrap cannot run here: {problem[0]} (fix: {problem[1]})"
    gpu = gpu_access()
    check = (
        "import os, torch\n"
        "print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available())\n"
        "if torch.cuda.is_available():\n"
        "    print('device:', torch.cuda.get_device_name(0), 'count:', torch.cuda.device_count())\n"
        "    x = torch.randn(256, 256, device='cuda')\n"
        "    print('matmul ok:', bool(torch.isfinite(x @ x).all()))\n"
        "print('visible:', os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
    )
    with tempfile.TemporaryDirectory(prefix="hopt-box-probe-") as tmp:
        root = Path(tmp)
        (root / "work").mkdir()
        (root / "work" / TRAIN_FILE).write_text(check)
        for name in (PREPARE_FILE, "train.txt", "val.txt", "model.pt"):
            (root / name).write_text("")
        paths = HostPaths(
            root / "work", root / PREPARE_FILE, root / "train.txt", root / "val.txt", root / "model.pt", root
        )
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0" if gpu else None)
        boxes = Boxes(paths, BoxSettings("bwrap", 1, {}, visible, gpu))
        r, w = os.pipe()
        step = boxes.train(w)
        try:
            done = subprocess.run(
                step.argv, env=step.env, pass_fds=step.pass_fds, capture_output=True, text=True, timeout=300
            )
        finally:
            os.close(r)
            os.close(w)
    said = [
        f"GPU device nodes: {', '.join(gpu.devices) if gpu else 'none'}",
        f"driver library dirs bound: {', '.join(gpu.library_dirs) if gpu and gpu.library_dirs else '-'}",
        done.stdout.strip(),
        done.stderr.strip()[-2000:],
    ]
    cuda_ok = gpu is None or "cuda available: True" in done.stdout
    return done.returncode == 0 and cuda_ok, "\n".join(s for s in said if s)


def main() -> int:
    ok, text = probe_train_box()
    print(text)
    print("train box: OK" if ok else "train box: NOT OK", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
