"""Fault suite fixtures: services built per test with the settings each fault needs."""

from __future__ import annotations

import os

import pytest

from tests.integration.harness import RedisServer, Service, stop_in_background

# Short leases so a dead worker is noticed in seconds; a cheap scrypt so many backups are quick.
FAST_FAULTS = {"H4_LEASE_SECONDS": "3", "H4_SCRYPT_WORK_FACTOR": "10"}


@pytest.fixture
def make_service(tmp_path):
    """Start a service: make_service(sources, workers=2, beat=True, appendonly=False, **env)."""
    running: list[tuple[Service, RedisServer]] = []

    def start(sources, workers=2, beat=True, appendonly=False, **env) -> Service:
        index = len(running)
        redis_server = RedisServer(tmp_path / f"redis{index}", appendonly=appendonly).start()
        service = Service(tmp_path / f"service{index}", redis_server, sources,
                          extra_env={**FAST_FAULTS, **env})
        running.append((service, redis_server))
        return service.start(workers=workers, beat=beat)

    yield start
    for service, redis_server in running:
        stop_in_background(service, redis_server)


def write_random_tree(root, total_bytes: int, file_bytes: int = 16 * 1024 * 1024):
    """Incompressible files: a backup of them takes as long as its size says."""
    root.mkdir(parents=True, exist_ok=True)
    for index in range(0, total_bytes, file_bytes):
        with open(root / f"blob{index // file_bytes:04d}.bin", "wb") as out:
            for _ in range(0, min(file_bytes, total_bytes - index), 1 << 20):
                out.write(os.urandom(1 << 20))
    return root


@pytest.fixture(scope="session")
def big_tree(tmp_path_factory):
    return write_random_tree(tmp_path_factory.mktemp("big") / "big", 500 * 1024 * 1024)
