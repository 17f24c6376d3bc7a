"""The only code that reads and writes the service's keys in Redis, one module per concern:
task rows (`tasks`), the backup catalogue (`catalogue`), users, sessions and login throttling
(`users`), the schedule (`schedule`), task figures (`metrics`), their Lua (`scripts`) and the
row encoding (`codec`).

Task rows are one hash each (`h4:task:<id>`). Every change of state runs as a Lua script that
checks the transition table from `common.states` inside Redis, so two writers can never race a
task out of a final state: a late progress write after SUCCEEDED simply does nothing. Creating a
backup task, counting it against the quota and reserving its backup id is one script too, so
concurrent requests cannot overshoot the quota.
"""

from __future__ import annotations

import uuid

import redis

from common.store import scripts
from common.store.alerts import Alerts
from common.store.catalogue import Catalogue
from common.store.codec import PREFIX, Created, SessionGate
from common.store.schedule import ScheduleStore
from common.store.tasks import TaskRows
from common.store.users import UsersAndSessions

__all__ = ["Created", "SessionGate", "Store"]


class Store(TaskRows, Catalogue, UsersAndSessions, ScheduleStore, Alerts):
    """The one object the API and the workers use, one mixin per concern."""

    def __init__(self, client: redis.Redis, task_ttl_seconds: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.task_ttl = task_ttl_seconds
        self._create_backup_task = client.register_script(scripts.CREATE_BACKUP_TASK)
        self._create_task = client.register_script(scripts.CREATE_TASK)
        self._gated_create_backup_task = client.register_script(
            scripts.gated(scripts.CREATE_BACKUP_TASK))
        self._gated_create_task = client.register_script(scripts.gated(scripts.CREATE_TASK))
        self._record_finished = client.register_script(scripts.RECORD_FINISHED)
        self._task_document = client.register_script(scripts.TASK_DOCUMENT)
        self._progress = client.register_script(scripts.PROGRESS)
        self._warning = client.register_script(scripts.WARNING)
        self._finish = client.register_script(scripts.FINISH)
        self._claim = client.register_script(scripts.CLAIM)
        self._renew = client.register_script(scripts.RENEW)
        self._unlist_backup = client.register_script(scripts.UNLIST_BACKUP)
        self._relist_backup = client.register_script(scripts.RELIST_BACKUP)
        self._hold_backup = client.register_script(scripts.HOLD_BACKUP)
        self._update_listed_backup = client.register_script(scripts.UPDATE_LISTED_BACKUP)
        self._mark_requeued = client.register_script(scripts.MARK_REQUEUED)
        self._cancel = client.register_script(scripts.CANCEL)
        self._take_slot = client.register_script(scripts.TAKE_SLOT)
        self._touch_session = client.register_script(scripts.TOUCH_SESSION)
        self._create_session = client.register_script(scripts.CREATE_SESSION)
        self._end_sessions = client.register_script(scripts.END_SESSIONS)
        self._add_user = client.register_script(scripts.ADD_USER)

    @classmethod
    def from_url(cls, url: str, task_ttl_seconds: int = 7 * 24 * 3600) -> Store:
        client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30,
                                      socket_connect_timeout=5, socket_timeout=30)
        return cls(client, task_ttl_seconds)

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # --- this installation -----------------------------------------------------------------

    def instance_id(self) -> str:
        """This installation's id: made by the first caller, the same for every process after."""
        key = f"{PREFIX}instance-id"
        with self.redis.pipeline() as pipe:
            pipe.set(key, str(uuid.uuid4()), nx=True)
            pipe.get(key)
            _created, instance = pipe.execute()
        return instance


