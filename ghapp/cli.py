"""The ``ghapp`` command: serve | web | worker | send | demo, and for an operator: deliveries |
retry, against REDIS_URL or the embedded Redis of a ``ghapp serve`` running here."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from ghapp.core import history
from ghapp.core.logs import configure_logging
from ghapp.core.process_secrets import handoff, protect_process, withheld
from ghapp.core.redis_connection import connect, describe
from ghapp.core.settings import (
    ConfigError,
    Settings,
    check_private_key,
    environment,
    load_settings,
    private_key_file_warning,
)
from ghapp.embedded_redis import URL_FILE, EmbeddedRedisError, running_url
from ghapp.registration import ENV_NAMES

DEFAULT_DATA_DIR = ".ghapp"
# What a delivery id is made of (GitHub's are GUIDs; a run again's add "-again-…").
DELIVERY_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


def _settings() -> Settings:
    return load_settings(environment())


def require_git(env: Mapping[str, str]) -> None:
    """The worker runs git: without it, say so in one line (GitPython would at import, in 60)."""
    git = env.get("GIT_PYTHON_GIT_EXECUTABLE", "").strip() or "git"
    if not shutil.which(git, path=env.get("PATH", os.defpath)):
        raise ConfigError(
            f"{git} is not on PATH: install git (e.g. apt-get install git), "
            "or set GIT_PYTHON_GIT_EXECUTABLE to its path"
        )


def cmd_web(args: argparse.Namespace) -> int:
    settings = _settings()
    settings.require_web()
    settings.require_redis()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:ghapp.gunicorn_config",
        "webapp:create_app()",
    ]
    # gunicorn's configuration reads the secrets from this pipe (protect_process).
    env, secrets_fd = handoff(os.environ, withheld())
    os.set_inheritable(secrets_fd, True)
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def cmd_worker(args: argparse.Namespace) -> int:
    require_git(os.environ)  # before worker's imports: GitPython fails at import without git
    from worker.run import run_worker

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    run_worker(settings, burst=args.burst)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ghapp.supervisor import serve

    settings = _settings()
    if not settings.app_id:
        # No App yet: the registration page, on the port the App's webhook will use.
        configure_logging(settings.log_level, settings.log_format)
        logging.getLogger("ghapp.serve").info(
            "no GitHub App configured (GITHUB_APP_ID): register one at http://127.0.0.1:%s/ "
            "(webhook deliveries are refused with 503 until then)",
            settings.port,
        )
        register(
            settings,
            public_url=settings.public_url,
            port=settings.port,
            force=False,
            serving=True,
        )
        settings = _settings()  # what registration wrote to .env
        shadowed = sorted(n for n in ENV_NAMES if n in os.environ or n in withheld())
        if shadowed:
            logging.getLogger("ghapp.serve").warning(
                "the environment sets %s, which win over what registration wrote to .env: "
                "unset them, or deliveries of the new App will be refused",
                ", ".join(shadowed),
            )
    settings.require_web()
    settings.require_worker()
    assert settings.private_key
    check_private_key(settings.private_key)
    require_git(os.environ)
    configure_logging(settings.log_level, settings.log_format)
    warning = private_key_file_warning(settings.private_key_path)
    if warning:
        logging.getLogger("ghapp.serve").warning(warning)
    stop_relay = None
    if settings.webhook_proxy_url:
        from ghapp.relay import RelayError, default_target, start_relay_thread

        try:
            _, stop_relay = start_relay_thread(
                settings.webhook_proxy_url, default_target(settings.port)
            )
        except RelayError as exc:
            raise ConfigError(f"WEBHOOK_PROXY_URL: {exc}") from None
    try:
        return serve(settings, data_dir=Path(args.data_dir))
    finally:
        if stop_relay is not None:
            stop_relay.set()


def register(
    settings: Settings,
    *,
    public_url: str | None,
    port: int,
    force: bool,
    org: str | None = None,
    name: str | None = None,
    serving: bool = False,
) -> dict[str, Any]:
    """Serve the registration page until the App is made; what GitHub said of it. On loopback,
    unless ``ghapp serve`` has a PUBLIC_URL: then where GitHub's users reach it."""
    from ghapp.registration import (
        Registration,
        RegistrationError,
        check_replaceable,
        serve_registration,
    )

    try:
        check_replaceable(Path(".env"), force=force)
    except RegistrationError as exc:
        raise ConfigError(str(exc)) from None
    reachable = serving and public_url
    page = Registration(
        github_url=settings.github_url,
        api_url=settings.api_url,
        env_path=Path(".env").resolve(),
        name=name or f"ghapp-{uuid.uuid4().hex[:6]}",
        redirect_url=f"{public_url}/registered"
        if reachable
        else f"http://127.0.0.1:{port}/registered",
        public_url=public_url,
        org=org,
        force=force,
        proxy_url=settings.webhook_proxy_url,
        serving=serving,
    )
    host = settings.host if reachable else "127.0.0.1"
    try:
        serve_registration(page, host, port)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): choose another with --port"
        ) from None
    return page.registered or {}


def cmd_register(args: argparse.Namespace) -> int:
    settings = _settings()
    load_settings({"PORT": str(args.port)})  # the port, validated
    configure_logging(settings.log_level, settings.log_format)
    public_url = args.public_url or settings.public_url
    if public_url:
        public_url = load_settings({"PUBLIC_URL": public_url}).public_url  # validated
    print(
        f"ghapp register: open http://127.0.0.1:{args.port}/ in your browser and press "
        f'"Register GitHub App" ({settings.github_url})',
        flush=True,
    )
    app = register(
        settings,
        public_url=public_url,
        port=args.port,
        force=args.force,
        org=args.org,
        name=args.name,
    )
    print(
        f"ghapp register: App {app.get('slug')} (id {app.get('id')}) registered, settings in "
        f".env; install it: {app.get('html_url')}/installations/new, then run ghapp serve"
    )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from ghapp.simulate import (
        TOKEN_VARIABLE,
        SimulateError,
        check_repositories,
        parse_files,
        run_simulation,
        simulate_push,
        simulate_rerun,
    )

    if args.action and not args.target:
        raise ConfigError(f"simulate {args.action} needs the repository: OWNER/NAME")
    try:
        if args.action == "push":
            settings = _settings()
            done = simulate_push(
                settings.github_url,
                environment().get(TOKEN_VARIABLE),
                args.target,
                branch=args.branch,
                files=parse_files(args.file or []),
            )
        elif args.action == "rerun":
            settings = _settings()
            done = simulate_rerun(
                settings.github_url,
                environment().get(TOKEN_VARIABLE),
                args.target,
                branch=args.branch,
                sha=args.sha,
            )
        else:
            configure_logging("INFO", "text")
            port = load_settings({"PORT": str(args.port)}).port  # validated
            check_repositories(args.repository or [])
            return run_simulation(
                port=port,
                ghapp_port=_settings().port,
                repositories=args.repository or ["demo-org/hello-world"],
                env_path=None if args.print_env else Path(".env").resolve(),
                force=args.force,
            )
    except SimulateError as exc:
        raise ConfigError(str(exc)) from None
    for delivery in done["deliveries"]:
        answer = delivery["status_code"] or "no answer (is `ghapp serve` running on PORT?)"
        print(
            f"{args.action} of {done['sha'][:12]} delivered to App {delivery['app_id']}: "
            f"{answer} ({delivery['guid']})"
        )
    if not done["deliveries"]:
        print(f"{done['sha'][:12]}: no App with an active webhook is installed on the repository")
    return 0 if all(d["status_code"] and d["status_code"] < 300 for d in done["deliveries"]) else 1


def cmd_relay(args: argparse.Namespace) -> int:
    from ghapp.relay import RelayError, default_target, run_relay

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        run_relay(
            args.url,
            args.target or default_target(settings.port),
            allow_remote_target=args.allow_remote_target,
        )
    except RelayError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    import requests

    from webapp.deliveries import signature_for

    settings = _settings()
    settings.require_web()
    try:
        body = Path(args.file).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {args.file} ({exc.strerror}): give a payload file"
        ) from None
    url = args.url or f"http://127.0.0.1:{settings.port}/webhook"
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": args.event,
        "X-GitHub-Delivery": args.delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature_for(body, settings.webhook_secrets[0]),
        "User-Agent": "GitHub-Hookshot/ghapp-send",
    }
    try:
        response = requests.post(url, data=body, headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise ConfigError(
            f"could not reach {url} ({type(exc).__name__}): is ghapp running?"
        ) from None
    print(f"{response.status_code} {response.text.strip()}")
    return 0 if response.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from ghapp.demo import run_demo

    return run_demo()


def operator_redis(settings: Settings, data_dir: Path) -> redis.Redis:
    """Redis for the operator's commands: REDIS_URL, else the embedded one of the ``ghapp
    serve`` running with ``data_dir``; ConfigError in one line if neither answers."""
    url = settings.redis_url or running_url(data_dir / "redis")
    if not url:
        raise ConfigError(
            f"REDIS_URL is not set and no ghapp serve is running with {data_dir} "
            f"(no {data_dir / 'redis' / URL_FILE}): start `ghapp serve` here, or set REDIS_URL"
        )
    connection = connect(url)
    try:
        connection.ping()
    except redis.RedisError as exc:
        where = "REDIS_URL" if settings.redis_url else f"the embedded Redis of {data_dir}"
        raise ConfigError(
            f"{where} ({describe(url)}) does not answer ({type(exc).__name__}): "
            "is Redis (or ghapp serve) running?"
        ) from None
    return connection


DURATION_RE = re.compile(r"(\d+)([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> int:
    """``30m``, ``1h``, ``2d`` in seconds; ConfigError in one line otherwise."""
    match = DURATION_RE.fullmatch(raw.strip())
    if not match or int(match[1]) == 0:
        raise ConfigError(f"--since {raw!r} is not a duration: give e.g. 30m, 1h or 2d")
    return int(match[1]) * UNIT_SECONDS[match[2]]


OUTCOMES = (*history.DELIVERY_OUTCOMES, *history.JOB_STATES)
# The table of ``ghapp deliveries``: heading, and the width past which a cell is cut (None:
# never cut: a delivery id is copied from it into ``ghapp retry``).
COLUMNS: tuple[tuple[str, int | None], ...] = (
    ("TIME", None),
    ("DELIVERY", None),
    ("EVENT", 18),
    ("REPOSITORY", 32),
    ("REF", 20),
    ("SHA", 7),
    ("STATE", None),
    ("REASON", 100),
)


def _row(entry: Mapping[str, Any]) -> list[str]:
    at = entry.get("received_at") or entry.get("at")
    when = datetime.fromtimestamp(float(at)).strftime("%Y-%m-%d %H:%M:%S") if at else "-"
    event = str(entry.get("event") or "-")
    if entry.get("action"):
        event += f".{entry['action']}"
    ref = str(entry.get("ref") or "-").removeprefix("refs/heads/")
    state = str(entry.get("job_state") or entry.get("outcome") or "-")
    reason = entry.get("error") or entry.get("reason") or ""
    if entry.get("status") and state == "refused":
        reason = f"{entry['status']} {reason}"
    return [
        when,
        str(entry.get("delivery") or "-"),
        event,
        str(entry.get("repository") or "-"),
        ref,
        str(entry.get("sha") or "-")[:7],
        state,
        " ".join(str(reason).split()),
    ]


def _table(entries: list[dict[str, Any]]) -> str:
    rows = [[name for name, _ in COLUMNS], *(_row(e) for e in entries)]
    for row in rows:
        for n, (_, cut) in enumerate(COLUMNS):
            if cut is not None and len(row[n]) > cut:
                row[n] = row[n][: cut - 1] + "…"
    widths = [max(len(row[n]) for row in rows) for n in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def cmd_deliveries(args: argparse.Namespace) -> int:
    if args.outcome and args.outcome not in OUTCOMES:
        raise ConfigError(f"--outcome {args.outcome!r} is not one of {', '.join(OUTCOMES)}")
    if args.limit < 1:
        raise ConfigError(f"--limit {args.limit} is too small: give at least 1")
    settings = _settings()
    connection = operator_redis(settings, Path(args.data_dir))
    entries = history.recent(
        connection,
        args.limit,
        repository=args.repository,
        outcome=args.outcome,
        event_name=args.event,
    )
    if args.json:
        for entry in entries:
            print(json.dumps(entry, sort_keys=True))
    elif entries:
        print(_table(entries))
    else:
        print("no deliveries recorded (with these filters)", file=sys.stderr)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from ghapp.core import retry

    if bool(args.deliveries) == bool(args.failed):
        raise ConfigError("give delivery ids, or --failed (not both): e.g. ghapp retry --failed")
    if args.since and not args.failed:
        raise ConfigError("--since goes with --failed: e.g. ghapp retry --failed --since 1h")
    since = time.time() - parse_duration(args.since) if args.since else None
    settings = _settings()
    connection = operator_redis(settings, Path(args.data_dir))
    errors = 0
    if args.failed:
        found = history.recent(
            connection,
            settings.history_limit,
            outcome="failed",
            since=since,
            scan=settings.history_limit,
        )
        # A failure run again already is retried through its newest run, not twice.
        entries = [
            entry
            for entry in found
            if entry.get("job_state") == "failed" and not entry.get("run_again_as")
        ]
        if not entries:
            print("no failed deliveries" + (f" in the last {args.since}" if since else ""))
    else:
        entries = []
        for delivery in dict.fromkeys(args.deliveries):
            if not DELIVERY_ID.fullmatch(delivery):
                raise ConfigError(
                    f"{delivery!r} is not a delivery id (letters, digits, - and _): copy one "
                    "from `ghapp deliveries`"
                )
            matching = history.find(connection, delivery)
            if not matching:
                print(
                    f"ghapp retry: delivery {delivery} is not in the history: "
                    "see `ghapp deliveries` for the ids kept",
                    file=sys.stderr,
                )
                errors += 1
            entries += matching
    for entry in entries:
        try:
            again = retry.queue_again(connection, entry, settings)
        except retry.NotRetryable as exc:
            print(f"ghapp retry: {exc}", file=sys.stderr)
            errors += 1
            continue
        print(f"{entry.get('delivery')} -> {again.delivery}, job {again.job_id}")
    return 1 if errors else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ghapp", description="A webhook-driven GitHub App server (settings: see README)."
    )
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run Redis (embedded unless REDIS_URL), web and workers")
    serve.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="where the embedded Redis keeps data"
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("web", help="run the web process (gunicorn) alone").set_defaults(func=cmd_web)
    worker = sub.add_parser("worker", help="run one worker process alone")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.set_defaults(func=cmd_worker)
    send = sub.add_parser("send", help="sign a payload file and post it to the webhook")
    send.add_argument("file")
    send.add_argument("--event", required=True, help="X-GitHub-Event, e.g. push")
    send.add_argument("--url", help="default: http://127.0.0.1:$PORT/webhook")
    send.add_argument("--delivery", help="X-GitHub-Delivery (default: a new one)")
    send.set_defaults(func=cmd_send)
    sub.add_parser("demo", help="the whole path on this machine, against a GitHub simulator")
    sub.choices["demo"].set_defaults(func=cmd_demo)
    data_dir_help = "the data directory of the ghapp serve whose Redis to use if REDIS_URL is unset"
    deliveries = sub.add_parser("deliveries", help="the deliveries answered, newest first")
    deliveries.add_argument("--outcome", help=f"one of {', '.join(OUTCOMES)}")
    deliveries.add_argument("--repository", help="OWNER/NAME")
    deliveries.add_argument("--event", help="e.g. push")
    deliveries.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    deliveries.add_argument("--json", action="store_true", help="one JSON object a line")
    deliveries.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=data_dir_help)
    deliveries.set_defaults(func=cmd_deliveries)
    again = sub.add_parser("retry", help="queue fresh jobs for the pushes of deliveries")
    again.add_argument("deliveries", nargs="*", metavar="DELIVERY")
    again.add_argument("--failed", action="store_true", help="every delivery whose job failed")
    again.add_argument("--since", help="with --failed: only those of the last 30m, 1h, 2d...")
    again.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=data_dir_help)
    again.set_defaults(func=cmd_retry)
    registration = sub.add_parser(
        "register", help="create the GitHub App in one click (App manifest) and write .env"
    )
    registration.add_argument("--org", help="register it for this organisation")
    registration.add_argument("--public-url", help="where GitHub reaches ghapp (PUBLIC_URL)")
    registration.add_argument("--name", help="the App's name (default: ghapp-<random>)")
    registration.add_argument("--port", type=int, default=3000, help="the local page's port")
    registration.add_argument(
        "--force", action="store_true", help="replace the App in .env (kept as .env.bak)"
    )
    registration.set_defaults(func=cmd_register)
    simulate = sub.add_parser(
        "simulate", help="a local GitHub (the simulator) with an App, for development"
    )
    simulate.add_argument("action", nargs="?", choices=("push", "rerun"), default=None)
    simulate.add_argument("target", nargs="?", metavar="OWNER/NAME", help="push/rerun: where")
    simulate.add_argument(
        "--repository", action="append", metavar="OWNER/NAME", help="a repository to serve"
    )
    simulate.add_argument("--port", type=int, default=3001, help="the local GitHub's port")
    simulate.add_argument("--print-env", action="store_true", help="print settings, no .env")
    simulate.add_argument("--force", action="store_true", help="replace the App in .env")
    simulate.add_argument("--branch", help="push/rerun: the branch (default: the default one)")
    simulate.add_argument(
        "--file", action="append", metavar="PATH=CONTENT", help="push: a file to commit"
    )
    simulate.add_argument("--sha", help="rerun: the commit (default: the branch's tip)")
    simulate.set_defaults(func=cmd_simulate)
    relay = sub.add_parser("relay", help="forward deliveries from a smee-style channel")
    relay.add_argument("url", help="the channel, e.g. https://smee.io/CHANNEL")
    relay.add_argument("--target", help="default: http://127.0.0.1:$PORT/webhook")
    relay.add_argument(
        "--allow-remote-target", action="store_true", help="forward to a host not this one"
    )
    relay.set_defaults(func=cmd_relay)
    return top


def main(argv: list[str] | None = None) -> int:
    protect_process()  # before anything else: the environment may hold the App's secrets
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, EmbeddedRedisError) as exc:
        print(f"ghapp {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
