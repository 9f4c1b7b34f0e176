"""Rollouts on a Ray cluster: each node runs the same sandboxed fork server; the driver keeps the rest.

`RayRolloutRunner` is a drop-in for `HarnessRunner` in the evaluator (`run(task, env, llm)`). On each
of a few Ray actors (`RolloutHost`, one CPU each, spread over the cluster's nodes) a `HarnessRunner`
forks the untrusted harness in bubblewrap exactly as it does locally, and its broker session checks
parameters and budgets as locally. What the session would serve from this process — the model call,
the tool call, the simulated user's turn — travels back to the driver through a `Relay` actor that
holds no key, no environment and no data of its own, only requests in flight. The driver serves them
in the rollout's own context, so the model client (keys, retries, cache, per-rollout call account),
the suite's environment and scorer, the trace file and the one ledger writer stay where they are for
a local run: a node never holds an API key and never writes a ledger row.

A Ray that this process starts itself (no `--address`) is started with the key variables removed from
the environment its worker processes inherit. On a real cluster the nodes are started by `ray start`
and hold whatever their own environment holds: see docs/architecture.md (Beyond one machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from harness_opt.errors import UserError
from harness_opt.harness.version import HarnessVersion
from harness_opt.llm.catalog import API_PROVIDERS
from harness_opt.llm.types import LLMRequest, LLMResult
from harness_opt.records import Task
from harness_opt.runtime import payload
from harness_opt.runtime.broker import HarnessRunner, RolloutResult
from harness_opt.runtime.sandbox import SandboxError
from harness_opt.runtime.session import LLMFn, RolloutSession
from harness_opt.suites.base import Environment, ToolError

_TAKE_WAIT_S = 0.5
"""How long the driver's long poll waits on the relay for requests before asking again."""


def key_variables(extra: str | None = None) -> set[str]:
    """The names of the variables that may hold a model key here: the catalog's, any *_API_KEY, and
    the one `--api-key-env` names."""
    names = set(API_PROVIDERS) | {k for k in os.environ if k.endswith("_API_KEY")}
    return names | ({extra} if extra else set())


@contextlib.contextmanager
def _without(names: set[str]) -> Iterator[None]:
    """These variables are absent from os.environ inside the block (child processes inherit that)."""
    saved = {k: os.environ.pop(k) for k in list(names) if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _reachable(address: str) -> str | None:
    """Why host:port cannot be reached (None when a TCP connection opens), checked before ray.init,
    which otherwise retries an unreachable cluster for a minute and ends in a traceback."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return "not host:port"
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def connect(address: str | None, api_key_env: str | None = None) -> ModuleType:
    """Ray, joined to the cluster at `address`, or to a local instance started here (None).

    A cluster that cannot be reached is one `UserError` naming the address, never a traceback."""
    try:
        import ray
    except ImportError:
        raise UserError(
            "--executor ray needs the ray package", fix="pip install 'harness-opt[training]' (or ray)"
        ) from None
    if ray.is_initialized():
        return ray
    fix = (
        "start a cluster with `ray start --head` and pass the address it prints (host:6379), "
        "or `auto` on one of its nodes"
    )
    if address not in (None, "auto", "local"):
        why = _reachable(address)
        if why is not None:
            raise UserError(f"cannot reach a Ray cluster at {address!r}: {why}", where="--address", fix=fix)
    try:
        if address in (None, "local"):
            with _without(key_variables(api_key_env)):  # the workers Ray forks inherit this env
                ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        said = " ".join(str(exc).split())[:300]
        raise UserError(
            f"cannot join the Ray cluster at {address!r}: {said}", where="--address", fix=fix
        ) from None
    return ray


# --------------------------------------------------------------------------- the relay (no keys)


class Relay:
    """Requests from the nodes' rollouts waiting for the driver's answer. Holds nothing else."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, int, str, Any]] = asyncio.Queue()
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)

    async def ask(self, rollout: int, op: str, body: Any) -> Any:
        """A node's request; returns when the driver answers it."""
        request = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[request] = future
        self.queue.put_nowait((request, rollout, op, body))
        try:
            return await future
        finally:
            self.waiting.pop(request, None)

    async def take(self, wait_s: float) -> list[tuple[int, int, str, Any]]:
        """The driver's long poll: every request waiting, as soon as there is one (or [] after wait_s)."""
        try:
            first = await asyncio.wait_for(self.queue.get(), wait_s)
        except TimeoutError:
            return []
        batch = [first]
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def answer(self, request: int, reply: Any) -> None:
        future = self.waiting.get(request)
        if future is not None and not future.done():
            future.set_result(reply)


# --------------------------------------------------------------------------- the node side


def _raise(reply: dict[str, Any]) -> None:
    """Re-raise on the node what the driver's call raised, under the same type name: the session
    records `Type: message`, and a trace must read the same whichever executor ran it."""
    if "raise" not in reply:
        return
    name, message = str(reply["raise"]), str(reply.get("message", ""))
    if name == "ToolError":
        raise ToolError(message)
    raise type(name, (Exception,), {})(message)


class _RemoteEnvironment:
    """The driver's environment as a node's session sees it. Tool calls are fetched before the session
    asks for them (`RemoteSession`), so the node's event loop never blocks on the network."""

    def __init__(self, ask: Any) -> None:
        self._ask = ask
        self.prefetched: dict[str, Any] | None = None

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        reply, self.prefetched = self.prefetched, None
        if reply is None:  # RemoteSession's rule no longer matches RolloutSession._tool's: a bug,
            # shown to the agent as a tool error (and caught by tests/test_ray_eval.py's edge cases)
            raise RuntimeError("harness-opt: a tool call reached the node without its reply")
        _raise(reply)
        return reply.get("value")


class _RemoteEnvironmentWithUser(_RemoteEnvironment):
    """… of a suite with a simulated user (`ctx.say`)."""

    async def user_turn(self, message: str) -> Any:
        reply = await self._ask("say", {"message": message})
        _raise(reply)
        return _Turn(**reply["value"])


class _Turn:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


_TURN_FIELDS = ("done", "content", "stop_reason", "model", "tokens_in", "tokens_out", "cost_usd", "latency_s")


class RemoteSession(RolloutSession):
    """The broker session on a node: the same checks as locally; a tool call the local session would
    make is fetched from the driver first (asynchronously), then served by the session as usual."""

    async def _answer(self, msg: dict[str, Any], proto: Any) -> Any:
        env = self.env
        if msg.get("op") == "tool" and isinstance(env, _RemoteEnvironment):
            args = msg.get("args")
            # exactly when RolloutSession._tool would call the environment
            if (
                self.steps < self.limits.max_steps
                and isinstance(args, dict)
                and payload.depth(args) <= payload.MAX_DEPTH
            ):
                name = payload.cut_text(str(msg.get("name")), 200)
                env.prefetched = await env._ask("tool", {"name": name, "args": args})
            try:
                return await super()._answer(msg, proto)
            finally:
                env.prefetched = None  # a reply is for this request only
        return await super()._answer(msg, proto)


class NodeRunner(HarnessRunner):
    """`HarnessRunner` whose rollouts use `RemoteSession`."""

    session_class = RemoteSession


class RolloutHost:
    """One Ray actor on a node: the harness version's sandboxed fork server and its rollouts."""

    def __init__(
        self, relay: Any, files: dict[str, bytes], version_hash: str, model: str, isolation: str
    ) -> None:
        self.relay = relay
        self.folder = tempfile.mkdtemp(prefix="harness-opt-version-")
        for rel, data in files.items():
            path = Path(self.folder, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.version = HarnessVersion.load(self.folder)
        if self.version.hash != version_hash:
            raise SandboxError(f"the harness files changed on their way to node {socket.gethostname()}")
        self.model, self.isolation = model, isolation
        self.runner: NodeRunner | None = None

    async def start(self, concurrency: int) -> dict[str, Any]:
        """Start the fork server; what the driver records (the node's isolation, its warning, its keys)."""
        self.runner = NodeRunner(
            self.version, model=self.model, isolation=self.isolation, concurrency=concurrency
        )
        await self.runner.__aenter__()
        return {
            "isolation": self.runner.isolation_label,
            "warning": self.runner.warning,
            "node": socket.gethostname(),
            "pid": os.getpid(),
        }

    async def run(self, rollout: int, task: dict[str, Any], has_user: bool) -> dict[str, Any]:
        assert self.runner is not None

        async def ask(op: str, body: Any) -> Any:
            return await self.relay.ask.remote(rollout, op, body)

        env = (_RemoteEnvironmentWithUser if has_user else _RemoteEnvironment)(ask)

        async def llm(req: LLMRequest) -> LLMResult:
            reply = await ask("llm", req.model_dump(mode="json"))
            _raise(reply)
            return LLMResult.model_validate(reply["value"])

        result = await self.runner.run(Task.model_validate(task), env, llm)
        return result.model_dump(mode="json")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.aclose()
        with contextlib.suppress(OSError):
            import shutil

            shutil.rmtree(self.folder)


# --------------------------------------------------------------------------- the driver side


class RayRolloutRunner:
    """The evaluator's runner for `--executor ray` (same shape as `HarnessRunner`).

    Starts a relay on the driver's node and `hosts` rollout hosts (one CPU each: Ray spreads them over
    the nodes), hands each rollout to the least busy host and serves its requests here until its
    result comes back. `api_key_env` names the variable to keep out of a Ray this process starts."""

    def __init__(
        self,
        version: HarnessVersion,
        *,
        model: str,
        isolation: str = "auto",
        concurrency: int = 8,
        address: str | None = None,
        api_key_env: str | None = None,
    ) -> None:
        self.ray = connect(address, api_key_env)
        self.version, self.model, self.isolation = version, model, isolation
        self.concurrency = max(1, concurrency)
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.n_hosts = max(1, min(self.concurrency, cpus))
        self.hosts: list[Any] = []
        self.busy: list[int] = []
        self.nodes: list[dict[str, Any]] = []
        self.warning: str | None = None
        self._inboxes: dict[int, asyncio.Queue[tuple[int, str, Any]]] = {}
        self._ids = itertools.count(1)
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def isolation_label(self) -> str:
        labels = sorted({str(n["isolation"]) for n in self.nodes}) or ["n/a"]
        nodes = len({n["node"] for n in self.nodes})
        return "; ".join(labels) + f" (ray: {_count(len(self.nodes), 'host')} on {_count(nodes, 'node')})"

    async def _get(self, ref: Any) -> Any:
        return await asyncio.wrap_future(ref.future())

    async def __aenter__(self) -> RayRolloutRunner:
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.relay = ray.remote(num_cpus=0, scheduling_strategy=here)(Relay).remote()
        host_cls = ray.remote(num_cpus=1, max_restarts=0, max_concurrency=self.concurrency + 8)(RolloutHost)
        per_host = -(-self.concurrency // self.n_hosts)
        files = ray.put(self.version.files())
        self.hosts = [
            host_cls.options(scheduling_strategy="SPREAD").remote(
                self.relay, files, self.version.hash, self.model, self.isolation
            )
            for _ in range(self.n_hosts)
        ]
        self.busy = [0] * len(self.hosts)
        try:
            self.nodes = list(
                await asyncio.gather(*(self._get(h.start.remote(per_host)) for h in self.hosts))
            )
        except Exception as exc:  # a node that cannot sandbox refuses, as this machine would
            await self.aclose()
            cause = getattr(exc, "cause", None) or exc
            raise SandboxError(f"a Ray node could not start the sandbox: {cause}") from None
        warnings = sorted({str(n["warning"]) for n in self.nodes if n.get("warning")})
        self.warning = "; ".join(warnings) or None
        self._poller = asyncio.ensure_future(self._poll())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
        stops = [h.stop.remote() for h in self.hosts]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(self._get(s) for s in stops)), 30)
        for actor in [*self.hosts, getattr(self, "relay", None)]:
            if actor is not None:
                with contextlib.suppress(Exception):
                    self.ray.kill(actor)

    async def _poll(self) -> None:
        """Move the nodes' requests from the relay to the rollout each belongs to."""
        while not self._closed:
            for request, rollout, op, body in await self._get(self.relay.take.remote(_TAKE_WAIT_S)):
                inbox = self._inboxes.get(rollout)
                if inbox is not None:
                    inbox.put_nowait((request, op, body))

    async def run(self, task: Task, env: Environment, llm: LLMFn) -> RolloutResult:
        """One rollout on a node; its requests are served here, in the caller's context (the
        rollout's cache scope and call account), until its result arrives."""
        rollout = next(self._ids)
        inbox: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()
        self._inboxes[rollout] = inbox
        index = min(range(len(self.hosts)), key=self.busy.__getitem__)
        self.busy[index] += 1
        has_user = inspect.iscoroutinefunction(getattr(env, "user_turn", None))
        done = asyncio.ensure_future(
            self._get(self.hosts[index].run.remote(rollout, task.model_dump(mode="json"), has_user))
        )
        try:
            while True:
                request = asyncio.ensure_future(inbox.get())
                await asyncio.wait({done, request}, return_when=asyncio.FIRST_COMPLETED)
                if not request.done():
                    request.cancel()
                    break
                number, op, body = request.result()
                self.relay.answer.remote(number, await _serve(op, body, env, llm))
            return RolloutResult.model_validate(done.result())
        except Exception as exc:  # the node or its actor died: this rollout's infrastructure failure
            now = _now()
            return RolloutResult(
                error="sandbox", error_detail=f"the Ray node running it failed: {exc}", started=now, ended=now
            )
        finally:
            self.busy[index] -= 1
            self._inboxes.pop(rollout, None)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _now() -> Any:
    from harness_opt.records import utcnow

    return utcnow()


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"raise": type(exc).__name__, "message": str(exc)}


async def _serve(op: str, body: Any, env: Environment, llm: LLMFn) -> dict[str, Any]:
    """A node's request, served here as the local broker session would serve it."""
    try:
        if op == "llm":
            return {"value": (await llm(LLMRequest.model_validate(body))).model_dump(mode="json")}
        if op == "tool":
            return {"value": env.call_tool(body["name"], body["args"])}
        if op == "say":
            turn = await env.user_turn(body["message"])  # type: ignore[attr-defined]
            return {"value": {k: getattr(turn, k, None) for k in _TURN_FIELDS}}
    except Exception as exc:
        return _failure(exc)
    return {"raise": "ValueError", "message": f"unknown request {op!r}"}
