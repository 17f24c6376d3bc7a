"""The table of task kinds: every kind has its handler and its Celery task, and nothing else
runs on a worker; the API documents each result, and the CLI shows it, from the table alone."""

import json
import uuid

import pytest

from api.schemas import RESULT_SCHEMAS, ApiTaskSchema, result_schema
from cli import task_view
from common import kinds
from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.mirrored import MirroredStorage
from common.kinds import (
    FORMATS,
    KINDS,
    ResultField,
    TaskKind,
    kind_of,
    kind_with_result,
)
from common.tasks import new_backup_task, new_task
from tests.conftest import login
from worker import jobs, tasks
from worker.app import celery


def test_every_kind_has_a_handler_and_every_handler_a_kind():
    assert set(jobs.HANDLERS) == set(KINDS)


def test_each_kind_runs_the_module_its_entry_names():
    for name, kind in KINDS.items():
        assert jobs.HANDLERS[name].__module__ == kind.handler


def test_every_kind_has_its_celery_task_under_its_name():
    for kind in KINDS.values():
        assert kind.celery_task in celery.tasks
        assert tasks.CELERY_TASKS[kind.name].name == kind.celery_task


def test_rows_no_worker_runs_have_no_kind():
    def row(kind: str):
        return new_task("admin", kind, "backup", "b1")

    assert kind_of(row("deleteBackup")) is None and kind_of(row("")) is None
    assert kind_of(row("backup")).stores_backup
    assert not kind_of(row("restore")).stores_backup


# --- results ---------------------------------------------------------------------------------

def _sample(kind: TaskKind) -> dict:
    """A result with every declared field, and one the kind does not declare."""
    values = {"string": "s", "uuid": str(uuid.uuid4()), "integer": 7, "boolean": True,
              "labels": {"env": "prod"}, "strings": ["primary", "replica"]}
    return {**{f.name: values[f.type] for f in kind.result}, "undeclared": 1}


@pytest.mark.parametrize("kind", KINDS.values(), ids=lambda kind: kind.name)
def test_each_kinds_result_fields_are_what_its_api_schema_serialises(kind):
    dumped = RESULT_SCHEMAS[kind.result_type]().dump(_sample(kind))
    assert list(dumped) == [field.name for field in kind.result]


@pytest.mark.parametrize("kind", KINDS.values(), ids=lambda kind: kind.name)
def test_nullable_result_fields_serialise_null(kind):
    nulls = {f.name: None for f in kind.result if f.nullable}
    assert RESULT_SCHEMAS[kind.result_type]().dump({**_sample(kind), **nulls}).items() >= \
        nulls.items()


def test_result_types_name_one_kind_each_and_health_none():
    assert {kind_with_result(k.result_type) for k in KINDS.values()} == set(KINDS.values())
    assert kind_with_result("CloudHealthInfo") is None and kind_with_result(None) is None


def test_api_task_result_description_names_every_result_type_and_its_fields():
    description = ApiTaskSchema().fields["result"].metadata["description"]
    for kind in KINDS.values():
        assert f"{kind.result_type} {{{', '.join(f.name for f in kind.result)}}}" in description
    assert "CloudHealthInfo" in description


def test_openapi_backup_info_is_the_backup_kinds_result(client):
    document = client.get("/openapi.json").get_json()
    backup_info = document["components"]["schemas"]["BackupInfo"]["properties"]
    assert set(backup_info) == {f.name for f in kinds.BACKUP.result}
    assert backup_info["id"] == {"type": "string", "format": "uuid",
                                 "description": "The backup's id."}


def test_openapi_documents_every_kinds_result_type(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    for kind in KINDS.values():
        assert set(schemas[kind.result_type]["properties"]) == {f.name for f in kind.result}


def test_the_table_refuses_an_unknown_type_or_format():
    with pytest.raises(ValueError):
        ResultField("x", "float", "no such type")
    with pytest.raises(ValueError):
        ResultField("x", "string", "no such format", format="fancy")


def test_the_cli_shows_every_format_the_table_may_name():
    assert set(task_view.FORMATTERS) == set(FORMATS)


# --- a kind added to the table ---------------------------------------------------------------

PRUNE = TaskKind(
    "prune", "h4.backup.prune", "PruneInfo", stores_backup=False,
    handler="worker.jobs.prune",
    result=(ResultField("removed", "integer", "Backups removed."),
            ResultField("freed", "integer", "Bytes freed.", label="freed", format="bytes"),
            ResultField("note", "string", "Why some were kept.", nullable=True)))


@pytest.fixture
def with_prune(monkeypatch):
    """A copy of the table with one kind more, as its entry would add it."""
    monkeypatch.setattr(kinds, "KINDS", {**KINDS, PRUNE.name: PRUNE})


def test_a_new_kind_gets_a_cli_view_with_no_code_change(with_prune):
    task = {"id": "t1", "state": "SUCCEEDED", "startTime": 1000, "endTime": 3000,
            "resultType": "PruneInfo", "result": {"removed": 2, "freed": 2500, "note": None},
            "workflowInfo": {"type": "prune", "resourceId": "r1"}}
    assert task_view.result_lines(task, {})[3:] == [("removed", "2"), ("freed", "2.5 kB")]


def test_a_new_kind_gets_an_api_schema_with_no_code_change(with_prune):
    schema = result_schema(kinds.kind_with_result("PruneInfo"))
    assert schema.__name__ == "PruneInfoSchema"
    assert schema().dump({"removed": 1, "freed": 2, "note": None, "x": 3}) == {
        "removed": 1, "freed": 2, "note": None}


# --- arguments: what the rows the API writes carry for the handlers --------------------------

@pytest.fixture
def listed(settings, store):
    backup_id = str(uuid.uuid4())
    row = new_backup_task("admin", backup_id, encrypted=True)
    store.create_backup_task(row, backup_id, 10, None, 60)
    settings.backup_dir.mkdir(parents=True, exist_ok=True)
    (settings.backup_dir / f"{backup_id}.tar.zst.age").write_bytes(b"age")
    info = {"id": backup_id, "generatedOn": 1, "hash": "SHA-512:00"}
    store.succeed(row.id, info, "BackupInfo",
                  backup={**info, "file": f"{backup_id}.tar.zst.age", "size": 3,
                          "encrypted": 1})
    return backup_id


def _started(client, listed, kind: str, body: dict) -> str:
    path = "/backups" if kind == "backup" else f"/backups/{listed}/{kind}"
    response = client.post(path, json=body, headers=login(client))
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["id"]


def _secret(app, store, task_id: str) -> dict:
    sealed = store.sealed_password(task_id)
    return json.loads(app.extensions["h4"].sealer.open(sealed, task_id)) if sealed else {}


# What each kind's route takes, its secrets included; the rest take the backup's password.
BODIES = {"rekey": {"password": "Pa$$w0rD!-kinds", "newPassword": "n3w-Pa$$w0rD!"},
          "copy": {}}


@pytest.mark.parametrize("name", KINDS)
def test_rows_the_api_writes_carry_the_kinds_arguments(app, client, store, listed, name,
                                                       tmp_path):
    kind, body = KINDS[name], BODIES.get(name, {"password": "Pa$$w0rD!-kinds"})
    services = app.extensions["h4"]
    # The copy route needs a replica to copy to.
    services.storage = MirroredStorage(services.storage, FolderStorage(tmp_path / "replica"))
    task_id = _started(client, listed, name, body)
    row, secret = store.get_task(task_id), _secret(app, store, task_id)
    in_row = [a.name for a in kind.arguments if not a.sealed and not a.optional]
    assert set(in_row) <= set(row.to_hash()), in_row
    assert secret == body and set(secret) <= {a.name for a in kind.arguments if a.sealed}



def test_a_row_without_an_argument_its_handler_reads_is_refused():
    with pytest.raises(ValueError, match="backupId"):
        kinds.VERIFY.check_arguments(new_task("admin", "verify", "backup", "b"), {})


def test_a_secret_the_kind_does_not_seal_is_refused():
    with pytest.raises(ValueError, match="token"):
        kinds.VERIFY.check_arguments(
            new_task("admin", "verify", "backup", "b", backup_id="b"), {"token": "x"})
