"""A stored backup sent from a storage that is not on this host (an object store).

The same answer a file on disk gets from send_file: Content-Length, ETag (the SHA-512), a
one-byte-range request answered 206 from a ranged read of the store (never by reading and
discarding what comes before), If-None-Match / If-Modified-Since answered 304, If-Range
honoured, an impossible range 416. The object is opened before the response starts, so a store
that fails shows as an ApiError rather than as a cut-off download.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime

from flask import Response, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import http_date, is_resource_modified

from common.backupfile.io.storage import BackupStorage, StoredObject

BLOCK = 1 << 20


def stream_backup(storage: BackupStorage, stored: StoredObject, etag: str,
                  download_name: str, modified_ms: int) -> Response:
    modified = datetime.fromtimestamp(modified_ms // 1000, UTC)
    headers = {"ETag": f'"{etag}"', "Last-Modified": http_date(modified),
               "Accept-Ranges": "bytes",
               "Content-Disposition": f'attachment; filename="{download_name}"'}
    if not is_resource_modified(request.environ, etag=etag, last_modified=modified):
        return Response(status=304, headers=headers)
    wanted = _wanted_range(stored.size, etag, modified)
    first, last = wanted if wanted else (0, stored.size - 1)
    stack = ExitStack()
    opened = stack.enter_context(storage.open_range(
        stored.name, first, last if wanted else None))
    response = Response(_blocks(opened.stream, stack), status=206 if wanted else 200,
                        headers=headers, mimetype="application/octet-stream",
                        direct_passthrough=True)
    response.content_length = opened.size
    if wanted:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{stored.size}"
    response.call_on_close(stack.close)
    return response


def _wanted_range(size: int, etag: str, modified: datetime) -> tuple[int, int] | None:
    """(first, last) of a single satisfiable range; None for the whole file (no Range, or an
    If-Range that no longer matches); 416 for a range outside the file."""
    asked = request.range
    if asked is None or asked.units != "bytes" or len(asked.ranges) != 1:
        return None
    if not _if_range_holds(etag, modified):
        return None
    bounds = asked.range_for_length(size)
    if bounds is None:
        raise RequestedRangeNotSatisfiable(length=size)
    return bounds[0], bounds[1] - 1


def _if_range_holds(etag: str, modified: datetime) -> bool:
    """True without If-Range, or when it names this very file (its ETag, or a date not
    before it was stored)."""
    condition = request.if_range
    if condition.etag:
        return condition.etag == etag
    if condition.date:
        return condition.date >= modified
    return True


def _blocks(stream, stack: ExitStack):
    try:
        while block := stream.read(BLOCK):
            yield block
    finally:
        stack.close()
