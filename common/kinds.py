"""The kinds of task a worker runs, in one table that the API, beat, the worker, the reaper and
the CLI read. Adding a kind: an entry here, the module it names under `worker/jobs/`, a route
that starts it through `common/starting.TaskStarter`, and a CLI verb. Its result is documented
by the API, checked by the runner and shown by the CLI from the entry alone.

Plain data only: the CLI client imports this module, and must not pull in server code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.tasks import TaskRow

# JSON types a result field may have ("uuid" is a string the API documents as a UUID).
FIELD_TYPES = ("string", "uuid", "integer", "boolean", "labels", "strings")
# How the CLI shows a value: as is, as a byte count, as a vCDA time (ms), as a hash check
# (ok/MISMATCH), as whether the content was read, as a path on the server, or as key=value
# pairs, or as a list.
FORMATS = ("plain", "bytes", "time", "hash-ok", "content-read", "on-server", "labels", "list")


@dataclass(frozen=True)
class ResultField:
    """One field of a kind's result: the API documents it, the CLI shows it as `label`."""

    name: str
    type: str
    description: str
    nullable: bool = False  # null means "does not apply", so the CLI leaves the line out
    label: str = ""  # the CLI's name for it; the field's own name when empty
    format: str = "plain"
    # Left out of a result it does not apply to: an extension a vCDA client never asked for
    # stays out of what that client reads.
    optional: bool = False

    def __post_init__(self) -> None:
        # A typo in the table would otherwise show only as a wrong document or a CLI crash.
        if self.type not in FIELD_TYPES or self.format not in FORMATS:
            raise ValueError(f"result field {self.name}: unknown type or format")


@dataclass(frozen=True)
class ClientLine:
    """A line the CLI shows beside a result, from what the client learnt itself (a backup's
    stored size comes from a HEAD request: the task counts no bytes). It follows the result
    field named by `after`."""

    key: str  # in the `extra` the CLI gathered
    label: str
    format: str
    after: str

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"client line {self.key}: unknown format")


@dataclass(frozen=True)
class ArgumentField:
    """What a task row carries for its handler; the Celery message carries the task id only.
    A sealed argument is not in the row: it travels sealed, in Redis memory only. The starter
    checks every row and secret against this list (TaskKind.check_arguments)."""

    name: str
    description: str
    sealed: bool = False
    optional: bool = False  # a row, or the sealed secret, may lack it


@dataclass(frozen=True)
class TaskKind:
    name: str  # the row's `type`, vCDA's workflowInfo.type
    celery_task: str  # the Celery task that runs it; its message carries the task id only
    result_type: str  # the ApiTask resultType it ends with
    stores_backup: bool  # an attempt may leave a half-written backup file for the next one
    handler: str  # the module whose run(ctx, task, reporter) does the work, in a worker
    arguments: tuple[ArgumentField, ...] = ()
    result: tuple[ResultField, ...] = ()
    client_lines: tuple[ClientLine, ...] = ()

    def result_names(self, present: object = ()) -> list[str]:
        """The result's fields in order; an optional one only when it is in `present`."""
        return [field.name for field in self.result
                if not field.optional or field.name in present]

    def check_arguments(self, row: TaskRow, secret: dict[str, str]) -> None:
        """ValueError unless the row holds every argument the handler reads and the secret
        only what may travel sealed: a route that forgot one fails when it starts the task,
        not in a worker later. Arguments are named as the row's hash fields, which is what
        a worker reads back."""
        written = row.to_hash()
        missing = [a.name for a in self.arguments
                   if not a.sealed and not a.optional and a.name not in written]
        unsealable = set(secret) - {a.name for a in self.arguments if a.sealed}
        if missing or unsealable:
            raise ValueError(f"{self.name} task: missing {missing}, "
                             f"not to be sealed {sorted(unsealable)}")


_BACKUP_ID = ArgumentField("backupId", "The backup the task makes or reads.")
_PASSWORD = ArgumentField("password", "The backup's age passphrase.", sealed=True, optional=True)
_IDENTITY = ArgumentField("identity", "An age identity that opens the backup.", sealed=True,
                          optional=True)

BACKUP = TaskKind(
    "backup", "h4.backup.generate", "BackupInfo", stores_backup=True,
    handler="worker.jobs.backup",
    arguments=(
        _BACKUP_ID,
        ArgumentField("encrypted", "1 when a password or recipients were given."),
        ArgumentField("recipients", "age public keys to encrypt to; none when absent.",
                      optional=True),
        ArgumentField("kind", "`scheduled` for beat's backups; manual when absent.",
                      optional=True),
        ArgumentField("labels", "Free-form labels (an object of strings); none when absent.",
                      optional=True),
        _PASSWORD,
    ),
    result=(
        ResultField("id", "uuid", "The backup's id.", label="backup"),
        ResultField("generatedOn", "integer", "Creation time, ms since the epoch.",
                    label="created", format="time"),
        ResultField("hash", "string", "SHA-512 of the stored file, `SHA-512:AB:CD:...`."),
        ResultField("labels", "labels", "Extension: the labels given when it was made, an "
                    "object of strings; absent without.", format="labels", optional=True),
        ResultField("integrity", "string", "Extension, in GET /backups once the backup was "
                    "verified: how its last check went: `verified` (every file read), `hash-ok` "
                    "(the stored bytes only) or `damaged`.", optional=True),
        ResultField("checkedOn", "integer", "Extension, in GET /backups with `integrity`: "
                    "when that check ended, ms since the epoch.", label="checked",
                    format="time", optional=True),
        ResultField("heldIn", "strings", "Extension, in GET /backups with a replica "
                    "configured: the stores holding a copy checked by its SHA-512, `primary` "
                    "and `replica`.", label="held in", format="list", optional=True),
    ),
    client_lines=(ClientLine("bytes_stored", "stored", "bytes", after="generatedOn"),),
)
RESTORE = TaskKind(
    "restore", "h4.backup.restore", "RestoreInfo", stores_backup=False,
    handler="worker.jobs.restore",
    arguments=(_BACKUP_ID, _PASSWORD, _IDENTITY),
    result=(
        ResultField("backupId", "string", "The backup restored.", label="backup"),
        ResultField("path", "string", "Folder the backup was restored into.",
                    label="restored to", format="on-server"),
        ResultField("files", "integer", "Files restored."),
        ResultField("bytes", "integer", "Bytes restored.", format="bytes"),
    ),
)
VERIFY = TaskKind(
    "verify", "h4.backup.verify", "VerifyInfo", stores_backup=False,
    handler="worker.jobs.verify",
    arguments=(_BACKUP_ID, _PASSWORD, _IDENTITY),
    result=(
        ResultField("backupId", "string", "The backup checked.", label="backup"),
        ResultField("hashOk", "boolean", "True when the stored bytes have the listed SHA-512.",
                    label="hash", format="hash-ok"),
        ResultField("contentChecked", "boolean",
                    "True when the archive was decrypted and every file checked.",
                    label="content", format="content-read"),
        ResultField("files", "integer", "null unless checked.", nullable=True),
        ResultField("bytes", "integer", "null unless checked.", nullable=True, format="bytes"),
    ),
)
REKEY = TaskKind(
    "rekey", "h4.backup.rekey", "RekeyInfo", stores_backup=False,
    handler="worker.jobs.rekey",
    arguments=(
        _BACKUP_ID, _PASSWORD, _IDENTITY,
        ArgumentField("newPassword", "The passphrase that opens the backup afterwards.",
                      sealed=True, optional=True),
        ArgumentField("recipients", "age public keys that open the backup afterwards, "
                      "instead of a new passphrase.", optional=True),
    ),
    result=(
        ResultField("backupId", "string", "The backup re-keyed.", label="backup"),
        ResultField("hash", "string", "SHA-512 of the stored file now, `SHA-512:AB:CD:...`; "
                    "the listing shows it."),
        ResultField("previousHash", "string", "SHA-512 of the file before: what a copy "
                    "downloaded earlier has.", label="previous hash"),
    ),
)
COPY = TaskKind(
    "copy", "h4.backup.copy", "CopyInfo", stores_backup=False,
    handler="worker.jobs.copy",
    arguments=(_BACKUP_ID,),
    result=(
        ResultField("backupId", "string", "The backup copied.", label="backup"),
        ResultField("hash", "string", "SHA-512 of the copy, read back from the replica: the "
                    "listed one."),
        ResultField("replica", "string", "Where the copy is held: a folder, or a bucket and "
                    "prefix.", format="on-server"),
        ResultField("bytes", "integer", "Bytes copied.", format="bytes"),
    ),
)
KINDS: dict[str, TaskKind] = {kind.name: kind
                              for kind in (BACKUP, RESTORE, VERIFY, REKEY, COPY)}


def kind_of(row: TaskRow) -> TaskKind | None:
    """The kind a worker runs for this row, or None for a row no worker runs."""
    return KINDS.get(row.type)


def kind_with_result(result_type: str | None) -> TaskKind | None:
    """The kind whose tasks end with this resultType: how a client reads a result it is
    handed. None for results no worker kind gives (a health check's CloudHealthInfo)."""
    return next((kind for kind in KINDS.values() if kind.result_type == result_type), None)
