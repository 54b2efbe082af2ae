"""A real S3 endpoint on 127.0.0.1 for the tests: moto's server, with authentication on, so a
wrong key is refused as AWS refuses it. Credentials reach rpgan, pyarrow and Ray's workers the
way they do on a cloud: the standard AWS variables, and AWS_ENDPOINT_URL for the store."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

from tests.processes import wait_for_output

BUCKET = "rpgan"
SETUP_CALLS = 4  # unauthenticated calls that make the user, its policy and key, and the bucket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(region: str = "us-east-1") -> tuple[subprocess.Popen, dict[str, str]]:
    """Start the server and make the bucket; (server process, the environment that reaches it)."""
    import boto3

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS), "PATH": "/usr/bin:/bin"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_output(server, "Running on", 30)  # werkzeug says so once it listens
    except AssertionError:
        server.kill()
        raise RuntimeError("moto_server did not start") from None
    # it logs every request: keep reading, or a full pipe would stall it
    threading.Thread(target=lambda: server.stdout.read(), daemon=True).start()
    setup = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", "region_name": region,
             "endpoint_url": endpoint}
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="rpgan")
    iam.put_user_policy(UserName="rpgan", PolicyName="runs", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="rpgan")["AccessKey"]
    boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
    return server, {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                    "AWS_DEFAULT_REGION": region, "AWS_ENDPOINT_URL": endpoint}
