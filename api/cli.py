"""``coachpay``: serve, worker, payouts run, db upgrade/stop, demo, token, stripe-emulator,
check-config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from core.errors import ConfigurationError
from core.settings import Settings, load_settings
from core.users import ROLES

log = logging.getLogger("coachpay.cli")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coachpay")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coachpay", description=__doc__)
    p.add_argument("--version", action="version", version=f"coachpay {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web app (and the jobs)")
    serve.add_argument("--host", help="address to bind (default: COACHPAY_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default: COACHPAY_PORT)")
    serve.add_argument(
        "--no-jobs",
        action="store_true",
        help="do not run the scheduled jobs (run `coachpay worker` for them)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="web processes (uvicorn workers); more than 1 needs COACHPAY_DATABASE_URL, "
        "a real Stripe key or COACHPAY_STRIPE_API_BASE, and --no-jobs (run `coachpay worker`)",
    )
    # One process kind does all background work: the scheduler (release, payouts,
    # webhook retries, cancelled sessions) and, with COACHPAY_WEBHOOK_PROCESSING=off,
    # the inbox drain. Any number may run (advisory locks, SKIP LOCKED claims).
    sub.add_parser(
        "worker",
        help="run the background work: the scheduled jobs (release, payouts, webhook "
        "retries, cancelled sessions) and, with COACHPAY_WEBHOOK_PROCESSING=off, the "
        "webhook inbox processing",
    )
    payouts = sub.add_parser("payouts", help="payout operations")
    payouts_sub = payouts.add_subparsers(dest="payouts_command", required=True)
    run = payouts_sub.add_parser("run", help="run one release + payout cycle now")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    db = sub.add_parser("db", help="database operations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the migrations")
    db_sub.add_parser(
        "stop", help="stop the embedded PostgreSQL of COACHPAY_DATA_DIR (it outlives commands)"
    )
    demo = sub.add_parser("demo", help="seed a demo marketplace")
    demo.add_argument("--serve", action="store_true", help="serve the app afterwards")
    token = sub.add_parser("token", help="print a bearer token")
    token.add_argument("--sub", required=True, help="the user's subject (any stable id)")
    token.add_argument("--role", required=True, choices=sorted(ROLES), help="the user's role")
    token.add_argument(
        "--ttl-minutes", type=int, help="lifetime (default: COACHPAY_JWT_TTL_MINUTES)"
    )
    emu = sub.add_parser(
        "stripe-emulator", help="run the Stripe emulator (more options: emulator/README.md)"
    )
    emu.add_argument("--port", type=int, help="port (default: COACHPAY_EMULATOR_PORT)")
    from core.outbox import listen

    listen.add_parser(sub.add_parser("events", help="outgoing events (webhooks)"))
    sub.add_parser("check-config", help="list what keeps this configuration from production")
    return p


# Commands that run the product (or mint its tokens): refused in production while
# a secret is a built-in default, short or missing (Settings.production_problems).
_GATED = frozenset({"serve", "worker", "payouts", "demo", "token"})


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = _parser().parse_known_args(argv)
    if rest and args.command != "stripe-emulator":
        _parser().error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"coachpay: {exc.detail}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        return check_config(settings)
    if args.command in _GATED:
        try:
            settings.check_production()
        except ConfigurationError as exc:
            print(f"coachpay: {exc.detail}", file=sys.stderr)
            print("coachpay: `coachpay check-config` lists every problem", file=sys.stderr)
            return 2
    if args.command == "token":
        return _token(settings, args)
    from api.logs import configure_logging, log_format

    configure_logging(settings.log_level, log_format(settings))
    try:
        stop = getattr(args, "db_command", None) == "stop"
        if settings.database_url is None and args.command in _NEEDS_DATABASE and not stop:
            from core.embedded import require_embedded

            require_embedded()
        command: Callable[[Settings, argparse.Namespace, list[str]], int] = _COMMANDS[args.command]
        return command(settings, args, rest)
    except ConfigurationError as exc:
        print(f"coachpay: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def check_config(settings: Settings) -> int:
    """Every problem a production deployment of these settings has, one a line; 1 if any."""
    problems = settings.production_problems()
    for line in problems:
        print(line)
    if problems:
        return 1
    print("ok")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from api.auth import mint_token

    ttl = args.ttl_minutes if args.ttl_minutes is not None else settings.jwt_ttl_minutes
    if ttl < 1:
        print("coachpay: --ttl-minutes must be at least 1", file=sys.stderr)
        return 2
    try:
        print(mint_token(settings, args.sub, args.role, timedelta(minutes=ttl)))
    except ValueError as exc:
        print(f"coachpay: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    host = args.host or settings.host
    port = args.port or settings.port
    if "public_url" not in settings.model_fields_set:
        # Webhooks from the emulator come back to where we actually listen.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        settings = settings.model_copy(update={"public_url": f"http://{shown}:{port}"})
    jobs = settings.run_jobs and not args.no_jobs
    if args.workers != 1:
        return _run_workers(settings, host, port, workers=args.workers, jobs=jobs)
    return _run_server(settings, host, port, jobs=jobs)


def _run_server(settings: Settings, host: str, port: int, *, jobs: bool) -> int:
    import uvicorn

    from api.app import create_app
    from api.runtime import Runtime

    runtime = Runtime(settings, jobs=jobs, export_metrics=True)
    app = create_app(settings, runtime=runtime, stop_runtime=True)
    app.on_startup.append(tune_gc)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on")
    uvicorn.Server(config).run()
    return 0


WORKER_HEALTHCHECK_SECONDS = 60


def _run_workers(settings: Settings, host: str, port: int, *, workers: int, jobs: bool) -> int:
    """``workers`` uvicorn processes on one socket, each building its app with
    ``worker_app`` from the environment. The embedded database and the emulator
    live inside one process, and N schedulers would run every job N times: refused."""
    problems = []
    if workers < 1:
        problems.append("--workers must be at least 1")
    if settings.database_url is None:
        problems.append("set COACHPAY_DATABASE_URL (the embedded database is per process)")
    if settings.uses_emulator and settings.stripe_api_base is None:
        problems.append(
            "set COACHPAY_STRIPE_SECRET_KEY or COACHPAY_STRIPE_API_BASE (the built-in "
            "emulator is per process; run `coachpay stripe-emulator` for a shared one)"
        )
    if jobs:
        problems.append("add --no-jobs (or COACHPAY_RUN_JOBS=false) and run `coachpay worker`")
    if settings.metrics_port is not None:
        problems.append(
            "unset COACHPAY_METRICS_PORT (one port cannot serve N processes; each worker "
            "answers GET /metrics for itself, or run one replica per container)"
        )
    if problems:
        raise ConfigurationError(f"serve --workers {workers}: " + "; ".join(problems))
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # The workers are new interpreters: they read the settings from the environment.
    os.environ["COACHPAY_PUBLIC_URL"] = settings.public_url
    os.environ["COACHPAY_RUN_JOBS"] = "false"
    config = uvicorn.Config(
        "api.cli:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        lifespan="on",
        # uvicorn kills a worker that does not answer its ping within this; a new one
        # spends its first seconds importing before it can answer, and on a busy
        # machine that took over the default 5 s: killed and restarted in a loop.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
    # What uvicorn.run does for workers, but uvicorn binds with proto 0 and asyncio
    # sets TCP_NODELAY only on connections of an IPPROTO_TCP socket: without it an
    # answer written in two parts waits for the client's delayed ACK (40 ms each).
    bound = config.bind_socket()
    sock = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[sock]).run()
    return 0


def worker_app() -> Any:
    """The app of one ``serve --workers N`` process (uvicorn calls it in each)."""
    from api.app import create_app
    from api.runtime import Runtime

    settings = load_settings()
    app = create_app(settings, runtime=Runtime(settings, jobs=False), stop_runtime=True)
    app.on_startup.append(tune_gc)
    return app


# Young collections after this many net allocations (CPython's default: 700), and
# the older generations' multipliers (default 10, 10).
GC_THRESHOLDS = (20_000, 50, 100)


def tune_gc(_: Any = None) -> None:
    """Garbage collection for a long-lived server process, once it has started.

    After start-up the heap holds a few hundred thousand objects that live as long
    as the process (modules, the app, SQLAlchemy's and Litestar's caches), and
    every older-generation collection walked them all: pauses of several ms that
    set the p99 of a 1.5 ms request (measured: p99 of a 404 6.6 ms before, 0.7 ms
    after). Frozen, collections skip them. A request's own objects are nearly all
    freed by reference counting, so rarer young collections lose little.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _with_runtime(
    settings: Settings,
    body: Callable[[Any], Awaitable[int]],
    *,
    jobs: bool = False,
    export_metrics: bool = False,
) -> int:
    from api.runtime import Runtime

    async def run() -> int:
        runtime = Runtime(settings, jobs=jobs, export_metrics=export_metrics)
        await runtime.start()
        try:
            return await body(runtime)
        finally:
            await runtime.stop()

    return asyncio.run(run())


def _worker(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    async def body(runtime: Any) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        drain = " and the webhook inbox" if runtime.webhook_processing == "off" else ""
        log.info("worker running the scheduled jobs%s; Ctrl-C to stop", drain)
        await stop.wait()
        return 0

    return _with_runtime(settings, body, jobs=True, export_metrics=True)


def _payouts(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    try:
        run_cycle = importlib.import_module("payouts.jobs").run_cycle
    except (ImportError, AttributeError):
        print("coachpay: payouts.jobs.run_cycle is not available yet", file=sys.stderr)
        return 1

    # A one-off command: its summary is the story, not the runtime's start-up lines.
    logging.getLogger("api.runtime").setLevel(logging.WARNING)

    async def body(runtime: Any) -> int:
        from api.jobs import cycle_json, cycle_summary
        from core.clock import OffsetClock

        ctx = runtime.context
        at = ctx.clock.now()
        result = await run_cycle(
            ctx.factory, gateway=ctx.gateway, clock=ctx.clock, settings=ctx.settings
        )
        simulated = isinstance(ctx.clock, OffsetClock)
        if args.json:
            out = {"at": at.isoformat(), "simulated_clock": simulated, **cycle_json(result)}
            print(json.dumps(out))
            return 0
        clock = " (the demo's simulated clock)" if simulated else ""
        print(f"payouts run at {at:%Y-%m-%d %H:%M} UTC{clock}")
        for line in cycle_summary(result):
            print(f"  {line}")
        return 0

    return _with_runtime(settings, body)


def _db(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    from core.embedded import embedded_database_url, stop_embedded
    from migrations.runner import upgrade

    if args.db_command == "stop":  # whatever COACHPAY_DATABASE_URL says: one may be left
        stopped = stop_embedded(settings.data_dir)
        where = settings.data_dir / "pg"
        print(f"embedded PostgreSQL in {where} " + ("stopped" if stopped else "was not running"))
        return 0
    url = settings.database_url or embedded_database_url(settings.data_dir)
    before, after = upgrade(url)
    if before == after:
        print(f"database already at the latest revision ({after})")
    else:
        print(f"database migrated from {before or 'an empty schema'} to {after}")
    return 0


def _demo(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    try:
        run_demo = importlib.import_module("api.demo").run_demo
    except (ImportError, AttributeError):
        print("coachpay demo: not available yet (api.demo.run_demo is missing)")
        return 1

    async def body(runtime: Any) -> int:
        result = await run_demo(runtime, serve=args.serve)
        return int(result) if isinstance(result, int) else 0

    with_loopback = importlib.import_module("api.demo_receiver").with_loopback
    return _with_runtime(with_loopback(settings), body, export_metrics=args.serve)


def _stripe_emulator(settings: Settings, args: argparse.Namespace, rest: list[str]) -> int:
    emulator_cli = importlib.import_module("emulator.cli")
    argv = ["--port", str(args.port or settings.emulator_port)]
    argv += [
        "--platform-webhook-url",
        f"{settings.public_url.rstrip('/')}/v1/webhooks/stripe",
        "--connect-webhook-url",
        f"{settings.public_url.rstrip('/')}/v1/webhooks/stripe/connect",
        "--platform-secret",
        settings.stripe_webhook_secret.get_secret_value(),
        "--connect-secret",
        settings.stripe_connect_webhook_secret.get_secret_value(),
    ]
    result = emulator_cli.main(argv + rest)
    return int(result or 0)


def _events(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    from api.auth import mint_token
    from core.outbox import listen

    token = args.token or os.environ.get("COACHPAY_TOKEN")
    token = token or mint_token(settings, "events-listen", "admin", timedelta(hours=12))
    return listen.run(args, api_url=args.api_url or settings.public_url, token=token)


# Commands that open the database: with no COACHPAY_DATABASE_URL, the embedded one.
_NEEDS_DATABASE = frozenset({"serve", "worker", "payouts", "db", "demo"})

_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace, list[str]], int]] = {
    "serve": _serve,
    "worker": _worker,
    "payouts": _payouts,
    "db": _db,
    "demo": _demo,
    "stripe-emulator": _stripe_emulator,
    "events": _events,
}

if __name__ == "__main__":
    sys.exit(main())
