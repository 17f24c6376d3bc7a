"""Any change to a user (password, roles, deletion, revocation) ends that user's sessions."""

from common.bootstrap import ADMIN_ROLES
from common.secrecy import hash_password
from tests.conftest import login

OPERATOR_PASSWORD = "op-pass"


def _operator(store, roles=ADMIN_ROLES):
    store.put_user("operator", hash_password(OPERATOR_PASSWORD), roles)


def _alive(client, headers) -> bool:
    return client.get("/sessions", headers=headers).status_code == 200


def test_a_new_password_ends_the_users_sessions(client, store):
    _operator(store)
    headers = login(client, "operator", OPERATOR_PASSWORD)
    store.put_user("operator", hash_password("new-pass"), ADMIN_ROLES)
    assert not _alive(client, headers)


def test_losing_the_admin_role_ends_the_users_sessions(client, store):
    _operator(store)
    headers = login(client, "operator", OPERATOR_PASSWORD)
    store.put_user("operator", store.get_user("operator")["password"], ["EVERYONE"])
    assert not _alive(client, headers)


def test_deleting_a_user_ends_its_sessions(client, store):
    _operator(store)
    headers = login(client, "operator", OPERATOR_PASSWORD)
    assert store.delete_user("operator")
    assert not _alive(client, headers)


def test_a_task_poll_with_the_session_of_a_deleted_user_is_refused(client, store):
    _operator(store)
    headers = login(client, "operator", OPERATOR_PASSWORD)
    task_id = client.post("/backups", json={}, headers=headers).get_json()["id"]
    store.delete_user("operator")
    assert client.get(f"/tasks/{task_id}", headers=headers).status_code == 401


def test_revoking_ends_only_that_users_sessions(client, store):
    _operator(store)
    operator = login(client, "operator", OPERATOR_PASSWORD)
    admin = login(client)
    assert store.end_sessions("operator")
    assert not _alive(client, operator) and _alive(client, admin)


def test_revoking_an_unknown_user_says_so(store):
    assert not store.end_sessions("ghost")


def test_a_login_that_raced_a_password_change_gets_no_session(store):
    _operator(store)
    seen = store.get_user("operator")
    store.put_user("operator", hash_password("new-pass"), ADMIN_ROLES)
    assert not store.create_session("d1", "operator", ADMIN_ROLES, idle=30,
                                    seen_generation=seen["generation"])
    assert store.touch_session_and_get_task("d1", 30, None) == (None, None)


def test_a_session_of_a_changed_user_is_deleted_when_next_used(store):
    _operator(store)
    store.create_session("d1", "operator", ADMIN_ROLES, idle=30)
    store.end_sessions("operator")
    store.touch_session_and_get_task("d1", 30, None)
    assert not store.redis.exists("h4:session:d1")


def test_users_are_listed_by_name_with_their_roles(store):
    _operator(store)
    store.put_user("viewer", hash_password("v"), ["EVERYONE"])
    assert store.list_users() == [{"name": "operator", "roles": ADMIN_ROLES},
                                  {"name": "viewer", "roles": ["EVERYONE"]}]
