"""The backup file and its pipeline, free of Celery, Redis and Flask.

format: what a backup file is (age, the tar stream, the manifest, member checks).
write: walking the sources and writing a backup (sources, archive, pipeline).
read: reading one back (plain stream, unpack, verify, restore, free space).
io: where the bytes go (storage, direct I/O, handoff between threads, hashing, progress).
"""
