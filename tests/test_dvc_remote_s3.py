"""`dvc push` / `dvc pull` round trip against a real local S3 (moto server) through dvc-s3, configured as the README
says: the remote URL in .dvc/config, the endpoint in .dvc/config.local (never committed), keys from the environment."""
import os
import shutil
import sys

import boto3
import pytest
from conftest import tool_env
from helpers import sh
from moto import server as moto_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def s3():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="dlkdd")
    yield url
    server.stop()


def test_push_pull_round_trip_through_s3(tmp_path, s3):
    env = tool_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    dvc = [sys.executable, "-m", "dvc"]
    repo = tmp_path / "repo"
    (repo / "data/footage/Jump").mkdir(parents=True)
    clip = repo / "data/footage/Jump/a.avi"
    payload = os.urandom(50_000)
    clip.write_bytes(payload)
    sh(["git", "init", "-q"], repo, env)
    sh(dvc + ["init", "-q"], repo, env)
    sh(dvc + ["remote", "add", "-d", "s3r", "s3://dlkdd/cache"], repo, env)
    sh(dvc + ["remote", "modify", "--local", "s3r", "endpointurl", s3], repo, env)
    sh(dvc + ["add", "-q", "data/footage"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "footage"], repo, env)
    assert "endpointurl" not in (repo / ".dvc/config").read_text()  # the endpoint stays out of git
    assert "endpointurl" in (repo / ".dvc/config.local").read_text()
    sh(dvc + ["push"], repo, env)
    objects = boto3.client("s3", endpoint_url=s3, aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1").list_objects_v2(Bucket="dlkdd", Prefix="cache/")
    assert objects.get("KeyCount", 0) >= 2  # the file and the directory listing

    # a fresh clone elsewhere: nothing local, everything comes back from S3
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    shutil.copy(repo / ".dvc/config.local", clone / ".dvc/config.local")
    assert not (clone / "data/footage").exists()
    sh(dvc + ["pull"], clone, env)
    assert (clone / "data/footage/Jump/a.avi").read_bytes() == payload
    sh(dvc + ["status", "--quiet"], clone, env)
