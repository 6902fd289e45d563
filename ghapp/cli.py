"""The ``ghapp`` command: serve | web | worker | send | demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from pathlib import Path

from ghapp.core.logs import configure_logging
from ghapp.core.process_secrets import handoff, protect_process, withheld
from ghapp.core.settings import (
    ConfigError,
    Settings,
    check_private_key,
    environment,
    load_settings,
    private_key_file_warning,
)
from ghapp.embedded_redis import EmbeddedRedisError


def _settings() -> Settings:
    return load_settings(environment())


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
    from worker.run import run_worker

    settings = _settings()
    configure_logging(settings.log_level)
    run_worker(settings, burst=args.burst)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ghapp.supervisor import serve

    settings = _settings()
    settings.require_web()
    settings.require_worker()
    assert settings.private_key
    check_private_key(settings.private_key)
    configure_logging(settings.log_level)
    warning = private_key_file_warning(settings.private_key_path)
    if warning:
        logging.getLogger("ghapp.serve").warning(warning)
    return serve(settings, data_dir=Path(args.data_dir))


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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ghapp", description="A webhook-driven GitHub App server (settings: see README)."
    )
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run Redis (embedded unless REDIS_URL), web and workers")
    serve.add_argument("--data-dir", default=".ghapp", help="where the embedded Redis keeps data")
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
