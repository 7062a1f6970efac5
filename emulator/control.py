"""The emulator's own JSON control API under `/_emulator` (documented in emulator/README.md).

Handlers play the parts of people and banks: the coach finishing onboarding, the mentee paying,
the card network opening a dispute, the coach's bank receiving a payout; and the test harness
(faults, webhook flushing, replays, reset).
"""

from __future__ import annotations

import html
from typing import Any

from emulator.errors import ControlError
from emulator.resources import accounts, checkout, disputes, payments, payouts
from emulator.router import Ctx, Resp, Router
from emulator.store import Obj


def register(router: Router) -> None:
    add = router.add
    add("GET", "/_emulator/config", get_config)
    add("POST", "/_emulator/config", set_config)
    add("POST", "/_emulator/reset", reset)
    add("GET", "/_emulator/state", state)
    add("GET", "/_emulator/stats", stats)
    add("POST", "/_emulator/clock/advance", advance_clock)
    add("POST", "/_emulator/accounts/{id}/complete_onboarding", complete_onboarding)
    add("POST", "/_emulator/accounts/{id}/restrict", restrict)
    add("POST", "/_emulator/accounts/{id}/disable", disable)
    add("POST", "/_emulator/accounts/{id}/payouts", payout)
    add("GET", "/_emulator/onboarding/{id}", onboarding_page)
    add("GET", "/_emulator/dashboard/{id}", dashboard_page)
    add("POST", "/_emulator/checkout/sessions/{id}/pay", pay_session)
    add("POST", "/_emulator/checkout/sessions/{id}/expire", expire_session)
    add("GET", "/_emulator/checkout/{id}", checkout_page)
    add("POST", "/_emulator/charges/{id}/dispute", open_dispute)
    add("POST", "/_emulator/refunds/{id}/fail", fail_refund)
    add("POST", "/_emulator/disputes/{id}/escalate", escalate_dispute)
    add("POST", "/_emulator/disputes/{id}/close", close_dispute)
    add("POST", "/_emulator/balance/available", make_available)
    add("GET", "/_emulator/events", list_events)
    add("POST", "/_emulator/events/redeliver", redeliver_many, is_async=True)
    add("POST", "/_emulator/events/{id}/redeliver", redeliver_one, is_async=True)
    add("GET", "/_emulator/webhooks", webhooks_summary)
    add("POST", "/_emulator/webhooks/flush", flush, is_async=True)
    add("POST", "/_emulator/webhooks/pause", pause)
    add("POST", "/_emulator/webhooks/resume", resume)
    add("GET", "/_emulator/faults", get_faults)
    add("POST", "/_emulator/faults", set_faults)
    add("POST", "/_emulator/faults/next", queue_faults)
    add("DELETE", "/_emulator/faults", clear_faults)


def _obj(ctx: Ctx, table: str, kind: str) -> Obj:
    obj = ctx.store.get(table, ctx.arg("id"))
    if obj is None:
        raise ControlError(f"no such {kind}: {ctx.arg('id')}", 404)
    return obj


def _int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError(f"{name} must be an integer")
    return value


# ---- configuration and state ---------------------------------------------------------------------


def get_config(ctx: Ctx) -> Obj:
    return ctx.store.config.to_dict()


def set_config(ctx: Ctx) -> Obj:
    ctx.store.config.update(ctx.params)
    return ctx.store.config.to_dict()


def reset(ctx: Ctx) -> Obj:
    ctx.app.reset()
    return {"reset": True}


def state(ctx: Ctx) -> Obj:
    summary = ctx.store.summary()
    summary["webhooks"] = ctx.app.webhooks.summary()
    summary["faults"] = ctx.app.faults.describe()
    return summary


def stats(ctx: Ctx) -> Obj:
    return ctx.app.stats.describe(ctx.app.faults.injected)


def advance_clock(ctx: Ctx) -> Obj:
    seconds = ctx.params.get("seconds")
    if not isinstance(seconds, int | float) or seconds < 0:
        raise ControlError("seconds must be a number >= 0")
    ctx.store.clock_offset += float(seconds)
    ctx.app.tick()
    return {"now": ctx.store.now(), "clock_offset": ctx.store.clock_offset}


# ---- accounts ------------------------------------------------------------------------------------


def complete_onboarding(ctx: Ctx) -> Obj:
    return accounts.complete_onboarding(ctx.store, _obj(ctx, "accounts", "account"))


def restrict(ctx: Ctx) -> Obj:
    return accounts.restrict(ctx.store, _obj(ctx, "accounts", "account"), ctx.params)


def disable(ctx: Ctx) -> Obj:
    reason = str(ctx.params.get("disabled_reason") or "rejected.other")
    return accounts.disable(ctx.store, _obj(ctx, "accounts", "account"), reason)


def payout(ctx: Ctx) -> Obj:
    body = ctx.params
    return payouts.payout(
        ctx.store,
        _obj(ctx, "accounts", "account"),
        amount=_int(body, "amount"),
        currency=body.get("currency"),
        outcome=str(body.get("outcome", "paid")),
        failure_code=str(body.get("failure_code", "account_closed")),
        force=bool(body.get("force", False)),
    )


def onboarding_page(ctx: Ctx) -> Resp:
    """The page an account link opens: visiting it completes onboarding, like a coach would."""
    account = _obj(ctx, "accounts", "account")
    if ctx.query.get("action") == "refresh":
        target = ctx.query.get("refresh_url")
    else:
        accounts.complete_onboarding(ctx.store, account)
        target = ctx.query.get("return_url")
    if isinstance(target, str) and target:
        return Resp(302, raw=b"", content_type="text/plain", headers=[("location", target)])
    return _page("Onboarding complete", f"Account {account['id']} can now receive transfers.")


def dashboard_page(ctx: Ctx) -> Resp:
    account = _obj(ctx, "accounts", "account")
    return _page("Express dashboard", f"Account {account['id']} ({account.get('email') or ''}).")


# ---- checkout, disputes, balance -----------------------------------------------------------------


def pay_session(ctx: Ctx) -> Obj:
    session = _obj(ctx, "checkout_sessions", "checkout session")
    outcome = str(ctx.params.get("outcome", "succeeded"))
    email = ctx.params.get("customer_email")
    return checkout.pay(ctx.store, session, outcome, email if isinstance(email, str) else None)


def expire_session(ctx: Ctx) -> Obj:
    session = _obj(ctx, "checkout_sessions", "checkout session")
    if session["status"] != "open":
        raise ControlError(f"session is {session['status']}, not open")
    return checkout.expire(ctx.store, session)


def checkout_page(ctx: Ctx) -> Resp:
    """The hosted Checkout stand-in: `?outcome=succeeded|failed|...` pays, `?cancel=1` leaves."""
    session = _obj(ctx, "checkout_sessions", "checkout session")
    outcome = ctx.query.get("outcome")
    if ctx.query.get("cancel") and session.get("cancel_url"):
        return Resp(302, raw=b"", headers=[("location", session["cancel_url"])])
    if isinstance(outcome, str):
        checkout.pay(ctx.store, session, outcome, None)
        success = session.get("success_url")
        if session["status"] == "complete" and success:
            target = success.replace("{CHECKOUT_SESSION_ID}", session["id"])
            return Resp(302, raw=b"", headers=[("location", target)])
    links = (
        " | ".join(f'<a href="?outcome={o}">{o}</a>' for o in checkout.OUTCOMES)
        + ' | <a href="?cancel=1">cancel</a>'
    )
    amount = f"{session['amount_total']} {session['currency']} (minor units)"
    return _page(
        "Checkout", f"Session {session['id']}: {amount}, status {session['status']}.", links
    )


def open_dispute(ctx: Ctx) -> Obj:
    charge = _obj(ctx, "charges", "charge")
    reason = str(ctx.params.get("reason", "fraudulent"))
    inquiry = ctx.params.get("inquiry", False)
    if not isinstance(inquiry, bool):
        raise ControlError("inquiry must be true or false")
    return disputes.open_dispute(
        ctx.store, charge, _int(ctx.params, "amount"), reason, inquiry=inquiry
    )


def fail_refund(ctx: Ctx) -> Obj:
    refund = _obj(ctx, "refunds", "refund")
    reason = str(ctx.params.get("failure_reason", "expired_or_canceled_card"))
    try:
        return payments.fail_refund(ctx.store, refund, reason)
    except ValueError as exc:
        raise ControlError(str(exc)) from None


def escalate_dispute(ctx: Ctx) -> Obj:
    return disputes.escalate(ctx.store, _obj(ctx, "disputes", "dispute"))


def close_dispute(ctx: Ctx) -> Obj:
    dispute = _obj(ctx, "disputes", "dispute")
    return disputes.close_dispute(ctx.store, dispute, str(ctx.params.get("outcome", "")))


def make_available(ctx: Ctx) -> Obj:
    settled = ctx.store.settle_funds(everything=True)
    return {"settled": settled, "balance": ctx.store.summary()["platform_balance"]}


# ---- events and webhooks -------------------------------------------------------------------------


def list_events(ctx: Ctx) -> Obj:
    store = ctx.store
    wanted = ctx.query.get("type")
    limit = ctx.query.get("limit")
    data = []
    for event in store.events.values():
        if wanted and event["type"] != wanted:
            continue
        record = store.deliveries.get(event["id"], {})
        data.append(
            {
                "id": event["id"],
                "type": event["type"],
                "account": event.get("account"),
                "created": event["created"],
                "object_id": event["data"]["object"].get("id"),
                "endpoint": record.get("endpoint"),
                "status": record.get("status"),
                "attempts": list(record.get("attempts", [])),
            }
        )
    if isinstance(limit, str) and limit.isdigit():
        data = data[-int(limit) :]
    return {"object": "list", "data": data}


def _times(body: dict[str, Any]) -> int:
    times = body.get("times", 1)
    if not isinstance(times, int) or times < 1:
        raise ControlError("times must be an integer >= 1")
    return times


async def redeliver_one(ctx: Ctx) -> Obj:
    event_id = ctx.arg("id")
    with ctx.store.lock:
        if event_id not in ctx.store.events:
            raise ControlError(f"no such event: {event_id}", 404)
    results = await ctx.app.webhooks.redeliver([event_id], _times(ctx.params))
    return {"deliveries": results}


async def redeliver_many(ctx: Ctx) -> Obj:
    ids = ctx.params.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ControlError("ids must be a list of event ids")
    with ctx.store.lock:
        unknown = [i for i in ids if i not in ctx.store.events]
    if unknown:
        raise ControlError(f"no such events: {', '.join(unknown)}", 404)
    results = await ctx.app.webhooks.redeliver(ids, _times(ctx.params))
    return {"deliveries": results}


def webhooks_summary(ctx: Ctx) -> Obj:
    return ctx.app.webhooks.summary()


async def flush(ctx: Ctx) -> Obj:
    timeout = ctx.params.get("timeout", 30)
    if not isinstance(timeout, int | float) or timeout < 0:
        raise ControlError("timeout must be a number >= 0")
    return await ctx.app.webhooks.flush(float(timeout))


def pause(ctx: Ctx) -> Obj:
    ctx.app.webhooks.pause()
    return ctx.app.webhooks.summary()


def resume(ctx: Ctx) -> Obj:
    ctx.app.webhooks.resume()
    return ctx.app.webhooks.summary()


# ---- faults --------------------------------------------------------------------------------------


def get_faults(ctx: Ctx) -> Obj:
    return ctx.app.faults.describe()


def set_faults(ctx: Ctx) -> Obj:
    ctx.app.faults.configure(ctx.params)
    return ctx.app.faults.describe()


def queue_faults(ctx: Ctx) -> Obj:
    ctx.app.faults.queue(ctx.params)
    return ctx.app.faults.describe()


def clear_faults(ctx: Ctx) -> Obj:
    ctx.app.faults.clear()
    return ctx.app.faults.describe()


def _page(title: str, text: str, extra: str = "") -> Resp:
    body = (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p><p>{extra}</p>"
        f"<p><small>coachpay Stripe emulator</small></p></body></html>"
    )
    return Resp(200, raw=body.encode(), content_type="text/html; charset=utf-8")
