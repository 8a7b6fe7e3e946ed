"""Real Dagster processes for end-to-end tests: dagster-webserver and dagster-daemon on a temp DAGSTER_HOME.

``dagster dev`` is not used: started in the background it ignored SIGINT/SIGTERM here
(observed on the development machine), while the webserver and the daemon each stop
cleanly on SIGTERM.  Both are started in their own process group and stopped by that
group's id only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import DagsterEventType

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The instance configurations the README documents (copied to DAGSTER_HOME/dagster.yaml).
INSTANCE_YAML = ROOT / "deploy" / "dagster.yaml"
POSTGRES_INSTANCE_YAML = ROOT / "deploy" / "dagster.postgres.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DagsterServices:
    home: Path
    port: int
    logs: Path

    @property
    def graphql_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.graphql_url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                doc = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"GraphQL HTTP {exc.code}: {exc.read().decode(errors='replace')[:3000]}"
            ) from None
        if doc.get("errors"):
            raise AssertionError(f"GraphQL errors: {doc['errors']}")
        return doc["data"]

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"==== {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def _wait(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def dagster_services(home: Path, env: dict[str, str], *, instance_yaml: Path) -> Iterator[DagsterServices]:
    """Start webserver + daemon on ``home`` (with ``instance_yaml`` as its dagster.yaml); stop both at exit."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml.read_text())
    # Not DAGSTER_HOME/logs: Dagster's telemetry owns that folder and clears it.
    logs = home.parent / "process_logs"
    logs.mkdir(exist_ok=True)
    port = free_port()
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    workspace = str(ROOT / "workspace.yaml")
    procs: list[subprocess.Popen] = []
    services = DagsterServices(home=home, port=port, logs=logs)
    # The test process reads the same instance (its config may name env vars).
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # Create the storage once, here: a webserver and a daemon starting on an empty
    # SQLite home both run the schema migration and one of them dies of the race.
    services.instance().dispose()
    try:
        for name, argv in (
            (
                "webserver",
                [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
            ),
            ("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace]),
        ):
            log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(
                subprocess.Popen(
                    argv, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            if name == "webserver":
                _wait(lambda: _answers(f"http://127.0.0.1:{port}/server_info"), 90, "dagster-webserver")
        yield services
    finally:
        for proc in procs:
            _stop(proc)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""


def launch_job(services: DagsterServices, job_name: str, partition: str | None = None) -> str:
    """Launch a job of the ``tdtp`` code location through GraphQL, as the UI's Launchpad does; its run id."""
    params: dict[str, Any] = {
        "selector": {
            "repositoryLocationName": "tdtp",
            "repositoryName": "__repository__",
            "jobName": job_name,
        },
        "runConfigData": {},
    }
    if partition is not None:
        params["executionMetadata"] = {"tags": [{"key": "dagster/partition", "value": partition}]}
    data = services.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    if data["__typename"] != "LaunchRunSuccess":
        raise AssertionError(f"run of {job_name} not launched: {data}")
    return data["run"]["runId"]


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on Error { message }
  }
}
"""

LOCATION_STATUS = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""


def wait_for_location(services: DagsterServices, timeout: float = 90) -> None:
    """Wait until the code location is loaded; fail with its load error if it has one."""
    state: dict[str, Any] = {}

    def loaded() -> bool:
        entries = services.graphql(LOCATION_STATUS)["workspaceOrError"].get("locationEntries") or []
        state["entries"] = entries
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

    _wait(loaded, timeout, "the code location to load")
    for entry in state["entries"]:
        error = entry["locationOrLoadError"]
        if error and error["__typename"] == "PythonError":
            raise AssertionError(f"code location {entry['name']} failed to load: {error['message']}")


def launch_asset_backfill(
    services: DagsterServices,
    asset_path: list[str],
    partitions: list[str],
    *,
    with_assets: Sequence[list[str]] = (),
) -> str:
    """Launch a backfill of ``partitions`` of one asset (and ``with_assets``) through GraphQL, as the UI does."""
    data = services.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": p} for p in [asset_path, *with_assets]],
                "partitionNames": partitions,
                "fromFailure": False,
            }
        },
    )["launchPartitionBackfill"]
    if data["__typename"] != "LaunchBackfillSuccess":
        raise AssertionError(f"backfill not launched: {data}")
    return data["backfillId"]


def backfill_status(services: DagsterServices, backfill_id: str) -> str:
    data = services.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    return data.get("status") or data["__typename"]


def check_results(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """Check name -> passed, for the asset check evaluations of one run."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        out[evaluation.check_name] = evaluation.passed
    return out


#: The checks of every import asset (``tdtp_assets.checks``): four blocking ones and the schema warning.
CHECK_NAMES = ("rows_match_summary", "parts_complete", "no_dead_letters", "checksum_matches", "schema_change")


def green_runs(instance: dg.DagsterInstance, table: str, partition: str | None) -> list[dg.DagsterRun]:
    """Successful runs that evaluated the partition's checks, all passed (land, publish or copy runs)."""
    out = []
    for run in instance.get_runs(filters=dg.RunsFilter(tags={"tdtp/table": table})):
        if run.status != dg.DagsterRunStatus.SUCCESS:
            continue
        results = {}
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data
            if evaluation.partition == partition:
                results[evaluation.check_name] = evaluation.passed
        if len(results) == len(CHECK_NAMES) and all(results.values()):
            out.append(run)
    return out


def describe_runs(instance: dg.DagsterInstance) -> str:
    lines = []
    for run in instance.get_runs(limit=60):
        lines.append(
            f"{run.job_name} {run.status.value} partition={run.tags.get('dagster/partition')} {run.run_id[:8]}"
        )
        if run.status == dg.DagsterRunStatus.FAILURE:
            for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE):
                lines.append(f"    {entry.dagster_event.event_specific_data.error.message.strip()[:400]}")
    return "\n".join(lines)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, on_timeout: Callable[[], str]
) -> None:
    try:
        _wait(predicate, timeout, what, step=1.0)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{on_timeout()}") from None


@contextmanager
def celery_workers(
    names: Sequence[str],
    root: Path,
    env: dict[str, str],
    *,
    broker: str,
    instance_yaml: Path,
    queue: str | None = None,
) -> Iterator[list[Path]]:
    """dagster-celery workers, each in a working directory and DAGSTER_HOME of its own (as on its own host).

    Each runs ``dagster-celery worker start`` (the command docs/deploy.md gives) with the
    solo pool (one task at a time in the worker process, which may start the importer's
    worker processes; a prefork child may not) and names itself in the ledger with ``TDTP_WORKER_NAME``; all are
    stopped at exit by their process group, whatever happened.  ``queue``: the Celery queue
    they listen on (``-q``; the tables file's ``celery_queue``), else dagster-celery's
    ``dagster``.  Yields their log files.
    """
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        for name in names:
            workdir = root / name
            home = workdir / "dagster_home"
            home.mkdir(parents=True, exist_ok=True)
            (home / "dagster.yaml").write_text(instance_yaml.read_text())
            config = workdir / "celery.yaml"
            config.write_text(f"execution:\n  config:\n    broker: {broker!r}\n")
            log_path = workdir / "worker.log"
            logs.append(log_path)
            worker_env = {**os.environ, **env, "DAGSTER_HOME": str(home), "TDTP_WORKER_NAME": name}
            worker_env.pop("PYTHONPATH", None)  # the package is installed, as on a worker host
            # dagster-celery starts `celery` from PATH: this venv's, as an activated venv would
            worker_env["PATH"] = f"{BIN}{os.pathsep}{worker_env.get('PATH', '')}"
            argv = [
                str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(config),
                "-n", name, "-l", "INFO", *(["-q", queue] if queue else []), "--", "--pool=solo",
            ]  # fmt: skip
            log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
            procs.append(
                subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=worker_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        for name, log_path, proc in zip(names, logs, procs, strict=True):
            _wait(
                lambda p=log_path, pr=proc: (
                    pr.poll() is not None or " ready." in p.read_text(errors="replace")
                ),
                120,
                f"celery worker {name}",
            )
            if proc.poll() is not None:
                raise AssertionError(
                    f"celery worker {name} exited: {log_path.read_text(errors='replace')[-3000:]}"
                )
        yield logs
    finally:
        for proc in procs:
            _stop(proc)
