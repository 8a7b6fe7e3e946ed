"""The tables file: which tables move, from where, through which broker, into what.

One YAML file describes every table (``TDTP_TABLES``, default: the demo file next to
this module).  It is validated when the code location loads, so a typo never turns
into a half-built asset graph: the first thing a user sees, in the UI and in
``dagster definitions validate``, is one error naming the table and the key.

Connection values are either a URL string or ``{env: NAME}``.  An ``{env: ...}`` value
never reaches the UI or run storage: resources receive it as ``dagster.EnvVar`` and
Dagster reads the variable when the run starts.

URL strings may use two placeholders, so one file works on every machine:
``{home}`` is the data directory as an absolute path (``TDTP_HOME``, default ``.tdtp``
under the current directory; ``sqlite:///{home}/x.db`` then has the four slashes of an
absolute path) and ``{table}`` is the table's name (how one default broker URL gives
every table a stream of its own).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tdtp_assets.config_checks import check_config
from tdtp_assets.connections import (
    Connection,
    EnvRef,
    label_of,
    sqlite_path,
)

DEMO_TABLES_FILE = Path(__file__).with_name("tables.demo.yaml")


class TablesConfigError(ValueError):
    """The tables file cannot be used; the message names the file, the table and the key."""


TABLES_ENV = "TDTP_TABLES"
HOME_ENV = "TDTP_HOME"
#: The deployment's executor for land ops when neither the table nor ``defaults`` names one.
EXECUTOR_ENV = "TDTP_EXECUTOR"
#: ``local``: land ops on this host (in process, or multiprocess with ``fanout > 1``);
#: ``celery``: on dagster-celery workers, any number of hosts (docs/deploy.md).
EXECUTORS = ("local", "celery")
DEFAULT_HOME = ".tdtp"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def data_home() -> Path:
    """The directory demo data, spools and local databases live in (absolute)."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


class Partitioning(BaseModel):
    """Exactly one of ``daily``/``hourly`` (a timestamp column) or ``static`` (a column with values).

    Days and hours are UTC, as the sources compare them: a timestamp column holds UTC
    (or naive UTC) values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily: str | None = None
    hourly: str | None = None
    static: str | None = None
    start: dt.date | dt.datetime | None = None
    end: dt.date | dt.datetime | None = Field(default=None, description="exclusive; open-ended when absent")
    values: list[str] | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _values_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Partitioning:
        kinds = [k for k in ("daily", "hourly", "static") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("give exactly one of daily: COLUMN, hourly: COLUMN or static: COLUMN")
        for column in kinds:
            _check_identifier(getattr(self, column), "partition column")
        if self.static:
            if not self.values:
                raise ValueError("static partitioning needs values: [..]")
            if len(set(self.values)) != len(self.values):
                raise ValueError("static partition values must be distinct")
            if self.start or self.end:
                raise ValueError("start/end apply to daily or hourly partitioning, not static")
        else:
            if self.values:
                raise ValueError("values apply to static partitioning only")
            if self.start is None:
                raise ValueError(f"{kinds[0]} partitioning needs start: YYYY-MM-DD")
            if self.end is not None and _as_datetime(self.end) <= _as_datetime(self.start):
                raise ValueError("end must be after start")
        return self

    @property
    def kind(self) -> Literal["daily", "hourly", "static"]:
        if self.daily:
            return "daily"
        return "hourly" if self.hourly else "static"

    @property
    def column(self) -> str:
        return self.daily or self.hourly or self.static or ""


def _as_datetime(value: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return dt.datetime(value.year, value.month, value.day)


def _check_identifier(value: str, what: str) -> None:
    # schema.table is allowed; each piece must be a plain SQL identifier.
    if not all(_NAME.match(piece) for piece in value.split(".")):
        raise ValueError(
            f"{what} {value!r} is not a plain identifier (letters, digits, _; schema.name allowed)"
        )


class Target(BaseModel):
    """Where the import lands: database URL, table, write mode."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    url: Connection
    table: str | None = None
    mode: Literal["replace", "upsert", "append"] = "replace"
    name: str | None = Field(default=None, description="concurrency-limit tag value; derived from the URL")
    require_hashes: bool = Field(
        default=False,
        description="refuse parts without TDTP v1.4 XXH3 hashes (they catch corruption, not a forger)",
    )
    schema_policy: Literal["evolve", "freeze", "discard_columns"] = Field(
        default="evolve",
        alias="schema",
        description="an export whose columns differ from the table's: evolve (add columns, widen types "
        "losslessly), freeze (refuse any difference) or discard_columns (leave out columns the table lacks)",
    )

    @field_validator("table")
    @classmethod
    def _table_ident(cls, value: str | None) -> str | None:
        if value is not None:
            _check_identifier(value, "target table")
        return value


class Schedule(BaseModel):
    """When a partitioned export runs by itself.  Off unless ``running: true``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    running: bool = False
    minute: int = Field(default=5, ge=0, le=59)
    hour: int = Field(default=0, ge=0, le=23)
    cron: str | None = Field(default=None, description="for static or unpartitioned tables")
    job: Literal["export", "copy"] = Field(
        default="export",
        description="export: the sensor imports; copy: export and import in one run (no sensor hop)",
    )


class Defaults(BaseModel):
    """Values every table inherits unless it sets its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: Connection = "spool:///{home}/spool/{table}"
    part_bytes: int = Field(default=1_900_000, ge=4096, le=64 * 2**20)
    part_raw_bytes: int = Field(default=8 * 2**20, ge=4096, le=64 * 2**20)  # decoded row bytes per part
    compress: Literal["zstd", "none"] = "zstd"
    workers: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1, le=64)
    mode: Literal["replace", "upsert", "append"] = "replace"
    owners: list[str] = Field(default_factory=list)
    max_parts_per_run: int = Field(default=200, ge=1, le=100_000)
    fanout: int = Field(default=1, ge=1, le=64)
    # A land run that fails is launched again by the sensor, after land_retry_seconds,
    # doubling per attempt up to land_retry_max_seconds.  Once land_retries re-launches
    # have failed too, the partition's import run fails its checks with the cause; the
    # re-launches go on at the capped interval, so the range lands once the cause is fixed.
    land_retries: int = Field(default=5, ge=0, le=1000)
    land_retry_seconds: float = Field(default=60.0, ge=0.0, le=86_400.0)
    land_retry_max_seconds: float = Field(default=3600.0, ge=0.0, le=7 * 86_400.0)
    # Where land ops run (EXECUTORS); unset: TDTP_EXECUTOR, else local.
    executor: Literal["local", "celery"] | None = None
    # executor: celery: the Celery broker and result backend the workers share (docs/deploy.md).
    # Unset broker: dagster-celery's default, pyamqp://guest@localhost// (host from DAGSTER_CELERY_BROKER_HOST).
    celery_broker: Connection | None = None
    celery_backend: str = "rpc://"
    # The Celery queue land ops go to (workers start with -q NAME); unset: dagster-celery's
    # ``dagster``.  One per deployment keeps two deployments on one broker apart.
    celery_queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,200}$")
    # A spool:// broker is a local directory: a multi-host executor is refused unless every
    # worker host mounts it at the same path and this says so.
    shared_spool: bool = False


class SensorSettings(BaseModel):
    """How the part-arrival sensor polls and batches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # dagster-daemon evaluates sensors at most every 5 s whatever this says below that.
    interval_seconds: int = Field(default=5, ge=1, le=3600)
    running: bool = True


class TableSpec(BaseModel):
    """One table as written in the file (before defaults are applied)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Connection
    table: str | None = None
    query: str | None = None
    columns: list[str] | None = None
    where: str | None = None
    partition: Partitioning | None = None
    broker: Connection | None = None
    target: Target
    part_bytes: int | None = Field(default=None, ge=4096, le=64 * 2**20)
    part_raw_bytes: int | None = Field(default=None, ge=4096, le=64 * 2**20)
    compress: Literal["zstd", "none"] | None = None
    workers: int | None = Field(default=None, ge=1, le=64)
    max_parts_per_run: int | None = Field(default=None, ge=1, le=100_000)
    fanout: int | None = Field(default=None, ge=1, le=64)
    land_retries: int | None = Field(default=None, ge=0, le=1000)
    executor: Literal["local", "celery"] | None = None
    shared_spool: bool | None = None
    group: str | None = None
    owners: list[str] | None = None
    description: str | None = None
    schedule: Schedule | None = None

    @field_validator("partition", mode="before")
    @classmethod
    def _none_means_unpartitioned(cls, value: Any) -> Any:
        return None if value in ("none", "None", False) else value

    @field_validator("table")
    @classmethod
    def _table_ident(cls, value: str | None) -> str | None:
        if value is not None:
            _check_identifier(value, "source table")
        return value

    @field_validator("columns")
    @classmethod
    def _column_idents(cls, value: list[str] | None) -> list[str] | None:
        for column in value or []:
            _check_identifier(column, "column")
        return value

    @field_validator("group")
    @classmethod
    def _group_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"group {value!r} must be letters, digits and _")
        return value

    @model_validator(mode="after")
    def _table_xor_query(self) -> TableSpec:
        if bool(self.table) == bool(self.query):
            raise ValueError("give exactly one of table: NAME or query: SQL")
        return self


class TableConfig(BaseModel):
    """One table with defaults applied and placeholders resolved: what the asset factory uses."""

    model_config = ConfigDict(frozen=True)

    name: str
    source: Connection
    source_table: str | None
    query: str | None
    columns: list[str] | None
    where: str | None
    partition: Partitioning | None
    broker: Connection
    target: Target
    target_table: str
    part_bytes: int
    part_raw_bytes: int
    compress: Literal["zstd", "none"]
    workers: int
    max_parts_per_run: int
    fanout: int
    land_retries: int
    land_retry_seconds: float
    land_retry_max_seconds: float
    group: str
    owners: list[str]
    executor: Literal["local", "celery"] = "local"
    celery_broker: Connection | None = None
    celery_backend: str = "rpc://"
    celery_queue: str | None = None
    shared_spool: bool = False
    description: str | None
    schedule: Schedule | None
    demo_db: str | None = None
    # Where the table is defined (the asset's code reference): the file and its line.
    tables_file: str | None = None
    tables_line: int | None = None

    @property
    def target_label(self) -> str:
        """The target's name in run tags (``tdtp/target``) and in its concurrency pool."""
        return self.target.name or label_of(self.target.url)

    @property
    def stream_label(self) -> str:
        """Identity of this table's part stream (sensor cursor key, run keys)."""
        return self.name


class TablesFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    demo: str | None = Field(default=None, description="SQLite file to generate demo data into on first use")
    defaults: Defaults = Field(default_factory=Defaults)
    sensor: SensorSettings = Field(default_factory=SensorSettings)
    tables: dict[str, TableSpec]

    @field_validator("tables")
    @classmethod
    def _some_tables(cls, value: dict[str, TableSpec]) -> dict[str, TableSpec]:
        if not value:
            raise ValueError("list at least one table")
        return value


class TablesConfig:
    """A validated tables file, with per-table settings resolved."""

    def __init__(
        self, raw: TablesFile, path: Path, home: Path, lines: Mapping[str, int] | None = None
    ) -> None:
        self.raw = raw
        self.path = path
        self.home = home
        self.lines = dict(lines or {})  # table name -> line of its entry in the file (1-based)

    @property
    def sensor(self) -> SensorSettings:
        return self.raw.sensor

    @property
    def demo_db(self) -> str | None:
        """Absolute path of the demo database to generate on first use, if the file asks for one."""
        return self.raw.demo.replace("{home}", self.home.as_posix()) if self.raw.demo else None

    @cached_property
    def instance_executor(self) -> Literal["local", "celery"]:
        """The deployment's executor (``TDTP_EXECUTOR``) for tables the file leaves it to."""
        value = os.environ.get(EXECUTOR_ENV) or "local"
        if value not in EXECUTORS:
            raise TablesConfigError(
                f"{self.path}: {EXECUTOR_ENV}={value!r} is not an executor; use one of {', '.join(EXECUTORS)}"
            )
        return value  # type: ignore[return-value]

    @cached_property
    def tables(self) -> dict[str, TableConfig]:
        return {name: self._resolve(name, spec) for name, spec in self.raw.tables.items()}

    def table(self, name: str) -> TableConfig:
        try:
            return self.tables[name]
        except KeyError:
            raise TablesConfigError(
                f"{self.path}: no table {name!r} (known: {', '.join(self.tables)})"
            ) from None

    def _resolve(self, name: str, spec: TableSpec) -> TableConfig:
        d = self.raw.defaults
        source = self._fill(spec.source, name)
        demo = self.demo_db
        uses_demo = isinstance(source, str) and demo is not None and sqlite_path(source) == demo
        return TableConfig(
            name=name,
            source=source,
            source_table=spec.table,
            query=spec.query,
            columns=spec.columns,
            where=spec.where,
            partition=spec.partition,
            broker=self._fill(spec.broker or d.broker, name),
            target=spec.target.model_copy(
                update={
                    "url": self._fill(spec.target.url, name),
                    # defaults.mode applies unless the table's target says otherwise
                    "mode": spec.target.mode if "mode" in spec.target.model_fields_set else d.mode,
                }
            ),
            target_table=spec.target.table or spec.table or name,
            part_bytes=spec.part_bytes or d.part_bytes,
            part_raw_bytes=spec.part_raw_bytes or d.part_raw_bytes,
            compress=spec.compress or d.compress,
            workers=spec.workers or d.workers,
            max_parts_per_run=spec.max_parts_per_run or d.max_parts_per_run,
            fanout=spec.fanout or d.fanout,
            land_retries=d.land_retries if spec.land_retries is None else spec.land_retries,
            land_retry_seconds=d.land_retry_seconds,
            land_retry_max_seconds=max(d.land_retry_seconds, d.land_retry_max_seconds),
            group=spec.group or label_of(spec.source),
            owners=spec.owners if spec.owners is not None else d.owners,
            executor=spec.executor or d.executor or self.instance_executor,
            celery_broker=d.celery_broker,
            celery_backend=d.celery_backend,
            celery_queue=d.celery_queue,
            shared_spool=d.shared_spool if spec.shared_spool is None else spec.shared_spool,
            description=spec.description,
            schedule=spec.schedule,
            demo_db=demo if uses_demo else None,
            tables_file=str(self.path),
            tables_line=self.lines.get(name),
        )

    def _fill(self, conn: Connection, table: str) -> Connection:
        if isinstance(conn, EnvRef):
            return conn
        return conn.replace("{home}", self.home.as_posix()).replace("{table}", table)


def _error_lines(path: Path, exc: ValidationError) -> list[str]:
    """One line per wrong key.  A union (URL or {env: ..}) fails once per member; keep the deepest."""
    best: dict[tuple[str, ...], tuple[int, str]] = {}
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"] if not _is_union_tag(p))
        head = loc[:3] if loc[:1] == ("tables",) else loc[:1]
        msg = "unknown key (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        line = _describe_error(path, loc, msg)
        if head not in best or len(loc) > best[head][0]:
            best[head] = (len(loc), line)
    return [line for _, line in best.values()]


def _describe_error(path: Path, loc: tuple[Any, ...], msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "tables":
        key = ".".join(str(p) for p in loc[2:] if not _is_union_tag(p)) or "(entry)"
        return f"{path}: table {loc[1]!r}, key {key!r}: {msg}"
    key = ".".join(str(p) for p in loc if not _is_union_tag(p)) or "(file)"
    return f"{path}: key {key!r}: {msg}"


def _is_union_tag(piece: Any) -> bool:
    # pydantic names the union member it tried ("str", "EnvRef"); users never wrote those.
    return piece in ("str", "EnvRef", "date", "datetime", "function-after[_one_kind(), Partitioning]")


def parse_tables(
    data: Any, path: Path, home: Path | None = None, lines: Mapping[str, int] | None = None
) -> TablesConfig:
    """Validate already-loaded YAML; raise TablesConfigError with one line per problem."""
    if not isinstance(data, Mapping):
        raise TablesConfigError(f"{path}: expected a mapping with 'tables:' at the top")
    for name in data.get("tables") or {}:
        if not isinstance(name, str) or not _NAME.match(name):
            raise TablesConfigError(
                f"{path}: table {name!r}: names are letters, digits and _ (used in asset keys)"
            )
    try:
        raw = TablesFile.model_validate(data)
    except ValidationError as exc:
        raise TablesConfigError("\n".join(_error_lines(path, exc))) from None
    config = TablesConfig(raw, path, home or data_home(), lines)
    problem = check_config(config)
    if problem:
        raise TablesConfigError(problem)
    return config


def tables_file_path() -> Path:
    """``TDTP_TABLES`` if set, else the demo file."""
    env = os.environ.get(TABLES_ENV)
    return Path(env).expanduser() if env else DEMO_TABLES_FILE


def load_tables(path: str | Path | None = None, home: Path | None = None) -> TablesConfig:
    """Read and validate a tables file (default: :func:`tables_file_path`)."""
    file = Path(path) if path is not None else tables_file_path()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise TablesConfigError(
            f"{file}: cannot read the tables file ({exc.strerror}); set {TABLES_ENV}"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TablesConfigError(f"{file}: not valid YAML: {exc}") from None
    return parse_tables(data, file, home, _table_lines(text))


def _table_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each entry under ``tables:``, for the assets' code references."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if getattr(key, "value", None) == "tables" and isinstance(value, yaml.MappingNode):
            return {str(k.value): k.start_mark.line + 1 for k, _ in value.value}
    return {}
