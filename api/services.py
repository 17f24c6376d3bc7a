"""What the views share, kept in the app's extensions, and the one way to reach it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

if TYPE_CHECKING:
    from api.health import HealthCache
    from common.backupfile.io.storage import BackupStorage
    from common.config import Settings
    from common.starting import TaskStarter
    from common.store import Store
    from common.transit import TransitSealer

EXTENSION = "h4"


@dataclass
class Services:
    settings: Settings
    store: Store
    sealer: TransitSealer
    dispatcher: Any
    starter: TaskStarter
    health: HealthCache
    storage: BackupStorage

    def install(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self


def app_services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[EXTENSION]
