"""``ghapp demo``: the whole path on this machine, no GitHub account needed.

A GitHub simulator with a sample repository, the embedded Redis, the web process and a worker;
one signed push goes in, and the processed result comes out, with its check run as GitHub
would hold it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import uuid
from pathlib import Path

import redis
import requests
from rq.job import Job, JobStatus

from ghapp.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from ghapp.local import free_port, wait_until
from ghapp.simulator import GitHubSimulator, generate_app_key
from ghapp.supervisor import Child, stop_all
from webapp.deliveries import signature_for

APP_ID = "1"
INSTALLATION_ID = 1
REPOSITORY = "demo-org/hello-world"
DEMO_COMMAND = (
    'echo "processing $GHAPP_REPOSITORY $GHAPP_REF at $GHAPP_SHA";'
    " git log -1 --format='commit %h: %s';"
    " echo 'files:'; git ls-files | sed 's/^/  /'"
)
SAMPLE_FILES = {
    "README.md": "# hello-world\n\nA sample repository served by ghapp's GitHub simulator.\n",
    "src/app.py": "def main() -> None:\n    print('hello, world')\n",
}


def say(text: str) -> None:
    print(f"ghapp demo: {text}", flush=True)


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def show_check_runs(simulator: GitHubSimulator, sha: str) -> None:
    """The commit's check runs as GitHub holds them: name, conclusion, title, the summary's
    first lines."""
    check_runs = simulator.check_runs(REPOSITORY, sha)
    if not check_runs:
        say(f"no check run on {sha[:12]}")
        return
    for check_run in check_runs:
        output = check_run["output"]
        say(
            f"check run on {sha[:12]}: {check_run['name']} · {check_run['status']} · "
            f"{check_run['conclusion']} · {output['title']}"
        )
        for line in (output["summary"] or "").splitlines()[:6]:
            print(f"    {line}")


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="ghapp-demo-") as scratch:
        home = Path(scratch)
        private_pem, public_pem = generate_app_key()
        simulator = GitHubSimulator(app_id=APP_ID, public_key_pem=public_pem, root=home / "github")
        embedded = EmbeddedRedis(home / "redis")
        children: list[Child] = []
        log_path = home / "processes.log"
        try:
            simulator.start()
            simulator.add_installation(INSTALLATION_ID, account="demo-org")
            repo = simulator.create_repository(
                REPOSITORY, installation_id=INSTALLATION_ID, files=SAMPLE_FILES
            )
            before = simulator.branch_tip(REPOSITORY, "main")
            after = simulator.commit(
                REPOSITORY, files={"CHANGELOG.md": "- first release\n"}, message="Add a changelog"
            )
            say(f"GitHub simulator at {simulator.url} with {REPOSITORY}")
            redis_url = embedded.start()
            say("embedded Redis started")
            port = free_port()
            secret = secrets.token_hex(16)
            env = dict(os.environ)
            env.update(
                GITHUB_APP_ID=APP_ID,
                GITHUB_PRIVATE_KEY=private_pem.decode(),
                GITHUB_WEBHOOK_SECRET=secret,
                GITHUB_API_URL=simulator.api_url,
                GITHUB_URL=simulator.url,
                REDIS_URL=redis_url,
                HOST="127.0.0.1",
                PORT=str(port),
                PROCESS_COMMAND=os.environ.get("PROCESS_COMMAND") or DEMO_COMMAND,
                WEB_CONCURRENCY="1",
            )
            env.pop("GITHUB_PRIVATE_KEY_PATH", None)
            log = open(log_path, "ab")  # noqa: SIM115 - closed with the scratch directory
            command = [sys.executable, "-m", "ghapp"]
            children = [
                Child("web", [*command, "web"], env, output=log),
                Child("worker", [*command, "worker"], env, output=log),
            ]
            for child in children:
                child.start()
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _healthy(url), 30, "the web process answering")
            say(f"web process (gunicorn) at {url}, one worker")

            payload = simulator.push_payload(REPOSITORY, before=before, after=after)
            body = json.dumps(payload).encode()
            delivery = str(uuid.uuid4())
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature_for(body, secret.encode()),
            }
            say(f"sending a signed push of {after[:12]} to {REPOSITORY} (delivery {delivery})")
            answer = requests.post(url + "/webhook", data=body, headers=headers, timeout=10)
            say(f"webhook answered {answer.status_code} {answer.text.strip()}")
            if answer.status_code != 202:
                return 1
            connection = redis.Redis.from_url(redis_url)
            job = Job.fetch(answer.json()["job_id"], connection=connection)
            wait_until(
                lambda: job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED),
                60,
                "the job ending",
            )
            again = requests.post(url + "/webhook", data=body, headers=headers, timeout=10)
            say(
                f"the same delivery again (a GitHub redelivery) answered {again.status_code} "
                f"{again.text.strip()}"
            )
            if job.get_status() != JobStatus.FINISHED:
                result = job.latest_result()
                say("the job failed:\n" + ((result.exc_string if result else None) or "no result"))
                return 1
            result = job.return_value()
            assert isinstance(result, dict), result
            say(
                f"processed {repo.full_name} at {result['sha']} — checkout summary: "
                f"{result['summary']['files']} files, {result['summary']['bytes']} bytes"
            )
            say(f"installation tokens minted: {len(simulator.issued_tokens)}")
            print("--- output of PROCESS_COMMAND ---")
            print(result["command"]["output"].rstrip())
            print("---")
            show_check_runs(simulator, after)
            say("done: the push was processed end to end")
            return 0
        except (TimeoutError, OSError, EmbeddedRedisError, requests.RequestException) as exc:
            say(f"failed: {exc}")
            if log_path.exists():
                print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            return 1
        finally:
            stop_all(children, grace=10)
            embedded.stop()
            simulator.stop()
