"""`coachpay stripe-emulator` / `python -m emulator`."""

from __future__ import annotations

import argparse
import logging

from emulator.config import Config
from emulator.server import EmulatorServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-emulator", description="Local emulator of the Stripe API used by coachpay."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--platform-webhook-url", default=None)
    parser.add_argument("--connect-webhook-url", default=None)
    parser.add_argument("--platform-secret", default="whsec_coachpay_platform_dev")
    parser.add_argument("--connect-secret", default="whsec_coachpay_connect_dev")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--funds-delay-seconds",
        type=int,
        default=0,
        help="seconds before charge funds become available (0: at once)",
    )
    parser.add_argument("--log-level", default="warning")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    config = Config(funds_delay_seconds=args.funds_delay_seconds)
    server = EmulatorServer(
        args.host,
        args.port,
        platform_webhook_url=args.platform_webhook_url,
        connect_webhook_url=args.connect_webhook_url,
        platform_secret=args.platform_secret,
        connect_secret=args.connect_secret,
        seed=args.seed,
        config=config,
        log_level=args.log_level,
    )
    print(f"Stripe emulator on {server.base_url} (control API under /_emulator)", flush=True)
    server.serve_forever()
    return 0
