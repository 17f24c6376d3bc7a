from __future__ import annotations

import pytest

from tests.integration.harness import RedisServer, Service, stop_in_background
from tests.integration.objectstore import s3_env, unique_bucket_name
from tests.integration.trees import make_tree

BACKENDS = ("folder", "s3")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    stop_in_background(server)  # after the services of the module (see BackgroundStops)


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("source") / "tree")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    """Where the service keeps its backups. A module whose tests do not depend on it
    overrides this fixture with one that returns "folder"."""
    return request.param


@pytest.fixture(scope="module")
def storage_env(request, backend, tmp_path_factory):
    """The settings that put a service's backups in `backend`: its own bucket in the test
    session's object store, or (empty) the folder."""
    if backend == "folder":
        return {}
    store = request.getfixturevalue("object_store")
    return s3_env(store, tmp_path_factory.mktemp("s3-keys"),
                  store.create_bucket(unique_bucket_name("h4")))


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, source_tree, storage_env):
    root = tmp_path_factory.mktemp("service")
    running = Service(root, redis_server, {"tree": source_tree},
                      extra_env={"H4_SCRYPT_WORK_FACTOR": "15", **storage_env}).start(workers=2)
    yield running
    stop_in_background(running)
