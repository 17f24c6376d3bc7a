"""What each client subcommand does; `cli.client` declares their arguments."""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import SplitResult, urlsplit

from cli import task_view
from cli.errors import NOT_FOUND, OK, USAGE, ClientError
from cli.output import Output, human_bytes, short_hash, when
from cli.passwords import backup_password, identity_file, login_password, new_key
from cli.remote import (
    Api,
    ApiRequestError,
    Trust,
    ca_cert_file,
    fingerprint_text,
    plain_http_warning,
)
from cli.session import Session, load_session, remove_session, save_session
from cli.transfer import download, resolve_target


def _connect(args: argparse.Namespace) -> tuple[Api, Output]:
    session, output = load_session(), Output(args.json)
    return _open(output, session.url, session.token, _trust(args) or session.trust), output


def _open(output: Output, url: str, token: str | None, trust: Trust) -> Api:
    warning = plain_http_warning(url)
    if warning:
        output.note(warning)
    return Api(url, token, trust)


def _trust(args: argparse.Namespace) -> Trust | None:
    """--ca-cert or --fingerprint, else $H4_CA_CERT or $H4_FINGERPRINT; None: none chosen."""
    ca_cert, pin = args.ca_cert, args.fingerprint
    if ca_cert is None and pin is None:
        ca_cert, pin = os.environ.get("H4_CA_CERT"), os.environ.get("H4_FINGERPRINT")
        if ca_cert and pin:
            raise ClientError("set H4_CA_CERT or H4_FINGERPRINT, not both", USAGE)
    try:
        if pin:
            return Trust(fingerprint=fingerprint_text(pin))
        return Trust(ca_cert=ca_cert_file(ca_cert)) if ca_cert else None
    except ValueError as exc:
        raise ClientError(str(exc), USAGE) from None


def login(args: argparse.Namespace) -> int:
    output = Output(args.json)
    url = _service_url(args.url)
    trust = _trust(args) or Trust()
    api = _open(output, url, None, trust)
    details, token = api.login(args.user, login_password(args))
    path = save_session(Session(url, token, details.get("user", args.user), trust))
    output.note(f"logged in to {url} as {details.get('user')} "
                f"({', '.join(details.get('roles', []))}); session saved in {path}")
    if args.json:
        output.emit(details)
    return OK


def _service_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname or not _port_ok(parts):
        raise ClientError(f"--url must be https://HOST[:PORT] (or http:// with H4_TLS=off): "
                          f"{text!r}", USAGE)
    return text.rstrip("/")


def _port_ok(parts: SplitResult) -> bool:
    try:
        return parts.port is None or parts.port > 0
    except ValueError:
        return False


def logout(args: argparse.Namespace) -> int:
    output = Output(args.json)
    try:
        session = load_session()
    except ClientError:
        output.note("not logged in")
        return OK
    trust = _trust(args) or session.trust
    try:
        _open(output, session.url, session.token, trust).call("DELETE", "/sessions",
                                                              expect=(204, 401))
    finally:
        # Even when the server cannot be told, the token must not stay on this machine.
        remove_session()
    output.note(f"logged out of {session.url}")
    return OK


def backup_create(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    password = backup_password(args, when_absent="ask", confirm=True)
    path = f"/backups/{args.id}" if args.id else "/backups"
    body = {**_password_body(password), **({"labels": dict(args.label)} if args.label else {})}
    task = api.json("POST", path, expect=(202,), json=body)
    if not args.wait:
        return task_view.started(output, task)
    task = task_view.wait_for(api, output, task, "backup")
    return task_view.finished(output, task, _stored_size(api, task))


def _password_body(password: str | None) -> dict[str, str]:
    return {"password": password} if password is not None else {}


def _stored_size(api: Api, task: task_view.Task) -> dict[str, Any]:
    """The stored file's size, from a HEAD request: the task itself counts no bytes."""
    backup = (task.get("result") or {}).get("id")
    if task["state"] != "SUCCEEDED" or not backup:
        return {}
    try:
        response = api.call("HEAD", f"/backups/{backup}")
    except ClientError:
        return {}
    length = response.headers.get("Content-Length")
    return {"bytes_stored": int(length)} if length and length.isdigit() else {}


def backup_list(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    backups = api.backups([f"{name}={value}" for name, value in args.label])
    if args.json:
        for backup in backups:
            output.emit(backup)
        return OK
    # HELD IN only from a server with a replica, CHECK once a backup was verified: only a
    # server that knows them says.
    copies = any("heldIn" in b for b in backups)
    checks = any("integrity" in b for b in backups)
    output.table(("ID", "CREATED", "HASH", "LABELS") + (("HELD IN",) if copies else ())
                 + (("CHECK",) if checks else ()), [
        (b["id"], when(b.get("generatedOn")), short_hash(b.get("hash", "")),
         task_view.labels_text(b.get("labels")) if b.get("labels") else "")
        + ((", ".join(b.get("heldIn") or ()),) if copies else ())
        + ((_check_cell(b),) if checks else ())
        for b in backups])
    output.note(f"{len(backups)} backup(s)")
    return OK


def _check_cell(backup: dict[str, Any]) -> str:
    if "integrity" not in backup:
        return "never"
    return f"{backup['integrity']} {when(backup.get('checkedOn'))}"


def backup_retention(args: argparse.Namespace) -> int:
    """What the schedule's keep rules would delete now, and why each other backup stays."""
    api, output = _connect(args)
    preview = api.retention_preview()
    if args.json:
        output.emit(preview)
        return OK
    decisions = sorted(preview["keep"] + preview["delete"], key=lambda d: d["generatedOn"],
                       reverse=True)
    rows = [(d["id"], when(d["generatedOn"]), d["kind"], "keep" if d["reasons"] else "DELETE",
             ", ".join(d["reasons"])) for d in decisions]
    output.table(("ID", "CREATED", "KIND", "RETENTION", "KEPT BY"), rows)
    rules = ", ".join(f"{name} {count}" for name, count in preview["keepRules"].items())
    output.note(f"rules: {rules} ({preview['timeZone']}); {len(preview['delete'])} of "
                f"{len(rows)} backup(s) would be deleted at the next scheduled backup")
    return OK


def backup_download(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    target = resolve_target(args.output, args.force)
    try:
        result = download(api, output, args.backup_id, target, args.verify)
    except KeyboardInterrupt:
        output.note("download interrupted; run the same command again to resume it")
        raise
    if args.json:
        output.emit(result)
        return OK
    output.data(result["path"])
    checks = "the catalog and the server's header" if result["hash_checks"] > 1 else (
        "the server's hash" if result["hash_checks"] else "nothing: no hash was offered")
    output.note(f"{human_bytes(result['bytes'])} written; SHA-512 checked against {checks}")
    return OK


def backup_delete(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    task = api.json("DELETE", f"/backups/{args.backup_id}", expect=(202,))
    return _follow(api, output, task, "delete", args.wait)


def backup_restore(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    password = backup_password(args, when_absent="ask", confirm=False)
    task = _part_b(api, "restore", args.backup_id, _password_body(password))
    return _follow(api, output, task, "restore", args.wait)


def backup_verify(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    password = backup_password(args, when_absent="none", confirm=False)
    task = _part_b(api, "verify", args.backup_id, _password_body(password))
    return _follow(api, output, task, "verify", args.wait)


def backup_rekey(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    identity = identity_file(args.identity_file)
    old = {"identity": identity} if identity else _password_body(
        backup_password(args, when_absent="ask", confirm=False))
    task = _part_b(api, "rekey", args.backup_id, {**old, **new_key(args)})
    return _follow(api, output, task, "rekey", args.wait)


def backup_copy(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    task = _part_b(api, "copy", args.backup_id, {})
    return _follow(api, output, task, "copy", args.wait)


def _part_b(api: Api, action: str, backup_id: str, body: dict[str, str]) -> task_view.Task:
    """Restore, verify, rekey and copy are newer than vCDA 4.5: an older server lacks the
    route."""
    try:
        return api.json("POST", f"/backups/{backup_id}/{action}", expect=(202,), json=body)
    except ApiRequestError as exc:
        if exc.status in (404, 405) and exc.code in ("NotFound", "MethodNotAllowed"):
            raise ClientError(f"this server does not offer {action} "
                              f"(POST /backups/ID/{action}: {exc})", NOT_FOUND) from None
        raise


def _follow(api: Api, output: Output, task: task_view.Task, label: str, wait: bool) -> int:
    if not wait:
        return task_view.started(output, task)
    return task_view.finished(output, task_view.wait_for(api, output, task, label))


def task_show(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    task = api.task(args.task_id)
    if args.wait:
        label = str((task.get("workflowInfo") or {}).get("type") or "task")
        return task_view.finished(output, task_view.wait_for(api, output, task, label))
    if args.json:
        output.emit(task)
    else:
        output.pairs(task_view.task_rows(task))
    return OK


def task_list(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    query: dict[str, Any] = {"limit": args.limit}
    if args.state:
        query["state"] = args.state
    page = api.json("GET", "/tasks", params=query)
    if args.json:
        for task in page["items"]:
            output.emit(task)
        return OK
    for line in task_view.task_table(page["items"]):
        output.data(line)
    output.note(f"{len(page['items'])} of {page['total']} task(s)")
    return OK


# --- alerts -----------------------------------------------------------------------------------

def checks_show(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    return _show_checks(args, output, api.json("GET", "/backups/checks"))


def checks_set(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    return _show_checks(args, output, api.json("PUT", "/backups/checks", json={
        "enabled": not args.off, "intervalSeconds": args.every, "cron": args.cron,
        "full": args.full}))


def _show_checks(args: argparse.Namespace, output: Output, config: dict[str, Any]) -> int:
    if args.json:
        output.emit(config)
    else:
        output.note(_checks_text(config))
    return OK


def _checks_text(config: dict[str, Any]) -> str:
    if not config.get("enabled"):
        return "scheduled checks are off"
    when_text = (f"every {config['intervalSeconds']} s" if config.get("intervalSeconds")
                 else f"at cron {config.get('cron')} (UTC)")
    depth = "every file where the identity opens it" if config.get("full") else "SHA-512 only"
    return f"every listed backup is checked {when_text}: {depth}"


def alerts_show(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    config = api.json("GET", "/alerts/config")
    if args.json:
        output.emit(config)
        return OK
    output.table(("URL", "EVENTS"), [(t["url"], ", ".join(t["events"]))
                                     for t in config["targets"]])
    output.note(f"{len(config['targets'])} target(s)")
    return OK


def alerts_set(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    events = [event.strip() for event in args.events.split(",") if event.strip()]
    config = api.json("PUT", "/alerts/config", json={
        "targets": [{"url": url, "events": events} for url in args.target],
        "overdueAfterSeconds": args.overdue_after})
    if args.json:
        output.emit(config)
    else:
        output.note(f"{len(config['targets'])} target(s) set" if config["targets"]
                    else "alerts are off")
    return OK


def alerts_test(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    answer = api.json("POST", "/alerts/test", expect=(202,))
    if args.json:
        output.emit(answer)
    else:
        output.note(f"test event queued for {answer['targets']} target(s): see "
                    "`h4backup alerts log`")
    return OK


def alerts_log(args: argparse.Namespace) -> int:
    api, output = _connect(args)
    entries = api.json("GET", "/alerts/deliveries", params={"limit": args.limit})
    if args.json:
        for entry in entries:
            output.emit(entry)
        return OK
    output.table(("WHEN", "EVENT", "URL", "ATTEMPT", "OUTCOME"), [
        (when(e["at"]), e["event"], e["url"], str(e["attempt"]),
         e["outcome"] if e["delivered"] else f"FAILED {e['outcome']}") for e in entries])
    return OK
