"""The API's gunicorn worker patches the standard library for gevent when it starts. A library
that took names from `ssl` before that keeps the unpatched ones, and an S3 or HTTPS call from
the worker then recurses until it crashes: the master must import none of them."""

import subprocess
import sys

TAKE_SSL_NAMES_AT_IMPORT = ("urllib3", "requests", "botocore", "boto3")


def test_the_api_master_imports_no_library_that_binds_ssl_names_early():
    probe = ("import sys, cli.server.gunicorn_app, cli.server.gunicorn_worker; "
             f"print([m for m in {TAKE_SSL_NAMES_AT_IMPORT!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
