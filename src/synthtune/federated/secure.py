"""SecAgg+ secure aggregation: Flower's ``SecAggPlusWorkflow`` and ``secaggplus_mod``.

Flower 1.42 runs SecAgg+ only through its message API (a ServerApp workflow sending messages
over a ``Grid``); the gRPC server/client pair of ``transport.py`` carries plain fit/evaluate
instructions and cannot. Flower's own Grids are the SuperLink's (separate processes driven
by ``flwr run``; used across machines, see ``deployment.py``) and the Ray simulation
engine's; neither runs in-process and offline. ``LocalGrid`` is the one piece written here
for the simulation (no library has it): Flower's abstract ``Grid``, delivering each message
to the destination node's ``ClientApp`` in a thread of this process. Everything of the
protocol (key agreement, Shamir shares, masking, quantisation, dropout recovery, unmasking)
is Flower's code, and the server-side rounds are Flower's
``DefaultWorkflow`` driving the same ``FederationStrategy`` as the gRPC path (checkpoints,
resume, signatures, the per-round table).
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.server import Grid

from synthtune.config.federated import SecureAggregationConfig

SUPERLINK_NODE = 1  # the server's node id in Flower's messages


class LocalGrid(Grid):
    """Flower's ``Grid`` over in-process ClientApps, one per node id (2, 3, ...).

    Each node keeps one ``Context`` for the whole run (secaggplus_mod keeps its keys and
    stage there between messages) and handles its messages one at a time, in order, on its
    own thread, like a SuperNode: a straggler that misses a timeout finishes before its node
    takes the next message. Replies a ``send_and_receive`` gave up on are dropped when they
    come, as the SuperLink drops expired messages. A node's app that raises answers with an
    error message, which Flower's workflows count as a failure (a dropped client).
    """

    def __init__(self, apps: list[Any], run_id: int = 1) -> None:
        from flwr.supercore.run import Run

        self._run = Run.create_empty(run_id)
        self._apps = {SUPERLINK_NODE + 1 + i: app for i, app in enumerate(apps)}
        self._contexts = {
            node: Context(
                run_id=run_id, node_id=node, node_config={}, state=RecordDict(), run_config={}
            )
            for node in self._apps
        }
        self._workers = {
            node: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"node-{node}")
            for node in self._apps
        }
        self._pending: dict[str, Future[Message]] = {}
        self._lock = threading.Lock()

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._apps)

    def _deliver(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        # A node gets its own copy, as over a wire: Flower's workflows send one content
        # object to every node, and secaggplus_mod consumes (pops) its entries.
        message = copy.deepcopy(message)
        try:
            reply = self._apps[node](message, self._contexts[node])
        except Exception as exc:  # the node failed this message; the workflow decides
            error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=repr(exc))
            reply = Message(error, reply_to=message)
        reply.metadata.__dict__["_message_id"] = uuid.uuid4().hex
        return reply

    def _unknown(self, message: Message) -> Future[Message]:
        done: Future[Message] = Future()
        error = Error(code=ErrorCode.NODE_UNAVAILABLE, reason="no such node")
        done.set_result(Message(error, reply_to=message))
        return done

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message_id = uuid.uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id
            message.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE
            message.metadata.__dict__["_run_id"] = self._run.run_id
            worker = self._workers.get(message.metadata.dst_node_id)
            future = worker.submit(self._deliver, message) if worker else self._unknown(message)
            with self._lock:
                self._pending[message_id] = future
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = []
        with self._lock:
            for message_id in list(message_ids):
                future = self._pending.get(message_id)
                if future is not None and future.done():
                    del self._pending[message_id]
                    replies.append(future.result())
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        ids = list(self.push_messages(messages))
        with self._lock:
            futures = [self._pending[i] for i in ids]
        wait_futures(futures, timeout=timeout)
        replies = self.pull_messages(ids)
        with self._lock:  # given up on: a late reply is dropped, not delivered later
            for message_id in ids:
                self._pending.pop(message_id, None)
        return replies

    def close(self) -> None:
        for worker in self._workers.values():
            worker.shutdown(wait=False, cancel_futures=True)


class _RecordedSecAgg:
    """Flower's SecAgg+ fit workflow, plus a row for rounds it halts (too few live clients
    or key shares: it returns without calling ``aggregate_fit``)."""

    def __init__(self, workflow: Any, strategy: Any) -> None:
        self.workflow = workflow
        self.strategy = strategy

    def __call__(self, grid: Grid, context: Any) -> None:
        from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, Key

        self.workflow(grid, context)
        current = int(context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        self.strategy.round_halted(
            current, "secure aggregation halted (too few live clients or key shares)"
        )
        self.strategy.round_row(current)["secure_aggregation"] = "secagg+"


def secure_client_mods(mods: list[Any]) -> list[Any]:
    """Client mods with SecAgg+ outermost: it masks what the inner mods (local DP) return."""
    from flwr.client.mod import secaggplus_mod

    return [secaggplus_mod, *mods]


def run_secure(
    strategy: Any,
    apps: list[Any],
    rounds: int,
    round_timeout: float | None,
    cfg: SecureAggregationConfig,
    max_weight: float,
) -> None:
    """Run ``rounds`` rounds of ``strategy`` with SecAgg+ over in-process ``apps``."""
    grid = LocalGrid(apps)
    context = Context(
        run_id=grid.run.run_id,
        node_id=SUPERLINK_NODE,
        node_config={},
        state=RecordDict(),
        run_config={},
    )
    with _server_identity(grid.run.run_id):
        try:
            secure_rounds(grid, context, strategy, rounds, round_timeout, cfg, max_weight)
        finally:
            grid.close()


def secure_rounds(
    grid: Grid,
    context: Context,
    strategy: Any,
    rounds: int,
    round_timeout: float | None,
    cfg: SecureAggregationConfig,
    max_weight: float,
) -> None:
    """Flower's DefaultWorkflow with SecAgg+ fit rounds, over any ``grid``: the in-process
    one above, or the SuperLink's in a deployment (``flower_app.py``)."""
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=rounds, round_timeout=round_timeout),
        strategy=strategy,
    )
    secagg = SecAggPlusWorkflow(
        num_shares=cfg.shares,
        reconstruction_threshold=cfg.threshold,
        max_weight=cfg.max_weight or max_weight,
        clipping_range=cfg.clipping_range,
        quantization_range=cfg.quantization_range,
        timeout=round_timeout,
    )
    DefaultWorkflow(fit_workflow=_RecordedSecAgg(secagg, strategy))(grid, legacy)


@contextmanager
def _server_identity(run_id: int) -> Iterator[None]:
    """Flower stamps new messages with the process's task identity (which the SuperLink
    sets for a ServerApp process); this process is the server for the run's duration."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SUPERLINK_NODE, 1
    try:
        yield
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved
