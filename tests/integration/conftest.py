from __future__ import annotations

import pytest

from tests.integration.conftest_objectstore import object_store  # noqa: F401
from tests.integration.harness import RedisServer, Service
from tests.integration.trees import make_tree


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("source") / "tree")


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, source_tree):
    root = tmp_path_factory.mktemp("service")
    running = Service(root, redis_server, {"tree": source_tree},
                      extra_env={"H4_SCRYPT_WORK_FACTOR": "15"}).start(workers=2)
    yield running
    running.stop()
