"""What ``/schema`` says of each operation: one summary, an optional description for API
clients, and the errors the route can really answer (api/errors.py maps them).

Read from the code: a guard gives 401/403; a path id 404 (and 422 out of range); query
or body validation 422; a body limit 413; the database away 503 (every route reads it);
a Stripe call 503 when Stripe's answer is unknown and 502 when it refuses, unless the
route turns a refusal into a 409. tests/api/test_openapi.py keeps this table and the
served routes the same.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RouteDoc:
    summary: str
    errors: frozenset[str]
    description: str | None = None
    public: bool = False  # no bearer token (a Stripe signature, a signed link, none)


def _doc(
    summary: str, *codes: str, description: str | None = None, public: bool = False
) -> RouteDoc:
    return RouteDoc(summary, frozenset(codes), description, public)


GUARD = ("401", "403", "503")
ID = ("404", "422")
STRIPE = ("502", "503")

ROUTE_DOCS: dict[tuple[str, str], RouteDoc] = {
    ("GET", "/health"): _doc(
        "Health of the database and Stripe",
        "503",
        public=True,
        description="200 while the database answers (Stripe may be unreachable); 503 without it.",
    ),
    ("GET", "/health/ready"): _doc(
        "Readiness: migrations at head and the demo seed done",
        "503",
        public=True,
        description="200 once the schema is at the latest migration and a demo's seed is done; "
        "503 with what is still awaited otherwise.",
    ),
    ("POST", "/auth/session"): _doc(
        "Sign in: keep a token in the session cookie",
        "401",
        "413",
        public=True,
        description="A form post (`token`, `next`) is redirected to `next`; a JSON body "
        '`{"token"}` is answered with who signed in.',
    ),
    ("POST", "/auth/logout"): _doc("Sign out: clear the session cookie", public=True),
    # coaches
    ("POST", "/v1/coaches/me/onboarding"): _doc(
        "Start or continue Stripe onboarding",
        *GUARD,
        "409",
        "413",
        "422",
        *STRIPE,
        description="Creates the coach's Connect account once and answers a fresh account link.",
    ),
    ("GET", "/v1/coaches/me/onboarding/refresh"): _doc(
        "Stripe's refresh URL: redirect to a new account link",
        "403",
        "404",
        "409",
        "422",
        *STRIPE,
        public=True,
        description="Authorised by the signed `token` in the link.",
    ),
    ("GET", "/v1/coaches/me/onboarding/return"): _doc(
        "Stripe's return URL: re-read the account",
        "403",
        "404",
        "422",
        *STRIPE,
        public=True,
        description="Authorised by the signed `token`. A browser is sent on to the coach page; "
        "`Accept: application/json` gets the account.",
    ),
    ("GET", "/v1/coaches/me/account"): _doc(
        "The coach's Connect account and what Stripe still needs",
        *GUARD,
        description="`dashboard_url`: a one-time Express dashboard link once active.",
    ),
    ("GET", "/v1/coaches/me/balance"): _doc(
        "The coach's balances per currency",
        *GUARD,
        description="With why payouts may not go out now: `payouts_paused` (by "
        "`payouts_paused_by`: `admin` or `transfer_refusals`, with `payouts_paused_reason`) "
        "and `next_payout_attempt_at` while backing off after refused transfers.",
    ),
    ("GET", "/v1/coaches/me/earnings"): _doc("The coach's earnings, newest first", *GUARD, "422"),
    ("GET", "/v1/coaches/me/payouts"): _doc("The coach's payouts, newest first", *GUARD, "422"),
    ("GET", "/v1/payouts/{payout_id}"): _doc(
        "One payout",
        *GUARD,
        *ID,
        description="Its coach, finance and admin; 404 for another coach's payout.",
    ),
    # admin
    ("GET", "/v1/admin/coaches/{coach_id}"): _doc("A coach's settings and account", *GUARD, *ID),
    ("PATCH", "/v1/admin/coaches/{coach_id}"): _doc(
        "Change a coach's fee, hold, schedule or minimum payout", *GUARD, *ID, "413"
    ),
    ("POST", "/v1/admin/coaches/{coach_id}/payouts/pause"): _doc(
        "Pause a coach's payouts", *GUARD, *ID, "413"
    ),
    ("POST", "/v1/admin/coaches/{coach_id}/payouts/resume"): _doc(
        "Resume a coach's payouts", *GUARD, *ID, "413"
    ),
    ("POST", "/v1/admin/payouts/{payout_id}/retry"): _doc(
        "Retry a failed payout", *GUARD, *ID, "409"
    ),
    # sessions and bookings
    ("POST", "/v1/sessions"): _doc("Publish a session", *GUARD, "409", "413", "422"),
    ("GET", "/v1/sessions"): _doc("Sessions open for booking", "401", "422", "503"),
    ("GET", "/v1/sessions/{session_id}"): _doc("One session", "401", "503", *ID),
    ("POST", "/v1/sessions/{session_id}/bookings"): _doc(
        "Book a seat and get the Stripe Checkout URL",
        *GUARD,
        *ID,
        "409",
        "413",
        *STRIPE,
        description="No body, or `{}`. Pay at `checkout_url`; Stripe sends the browser back "
        "to `/bookings/{id}`.",
    ),
    ("POST", "/v1/sessions/{session_id}/cancel"): _doc(
        "Cancel a session and refund its paid bookings",
        *GUARD,
        *ID,
        "409",
        "413",
        description="Its coach before it starts, an admin any time; repeating it settles "
        "whatever is still owed.",
    ),
    ("GET", "/v1/bookings"): _doc("The mentee's bookings, upcoming and past", *GUARD),
    ("GET", "/v1/bookings/{booking_id}"): _doc(
        "One booking",
        "401",
        "503",
        *ID,
        description="Its mentee, finance and admin see it with the fee (`fee`: the platform's "
        "fee and the coach's share); the coach of its session sees it with `fee` null; "
        "anyone else gets 404.",
    ),
    ("POST", "/v1/bookings/{booking_id}/cancel"): _doc(
        "Cancel an unpaid booking", *GUARD, *ID, "409", *STRIPE
    ),
    ("POST", "/v1/bookings/{booking_id}/retry"): _doc(
        "Pay a failed booking again (a new Checkout URL)", *GUARD, *ID, "409", *STRIPE
    ),
    ("POST", "/v1/bookings/{booking_id}/refund"): _doc(
        "Refund a booking, whole or part",
        *GUARD,
        *ID,
        "409",
        "413",
        description='`{"amount": n}` in minor units, or nothing for all that remains. The '
        "mentee within the refund window, the coach, an admin. Send an `Idempotency-Key` "
        "header to make a retry safe.",
    ),
    ("GET", "/v1/bookings/{booking_id}/history"): _doc(
        "A booking's state and every change it went through",
        *GUARD,
        *ID,
        description="Finance staff, admins, and the booking's own mentee (without `detail`).",
    ),
    # finance
    ("GET", "/v1/finance/summary"): _doc("Totals per currency, by period", *GUARD, "422"),
    ("GET", "/v1/finance/transactions"): _doc(
        "Journal transactions, oldest first (CSV: all of them)", *GUARD, "422"
    ),
    ("GET", "/v1/finance/payouts"): _doc("Payouts, newest first", *GUARD, "422"),
    ("GET", "/v1/finance/trial-balance"): _doc("Every ledger account's balance", *GUARD, "422"),
    ("GET", "/v1/finance/reconciliation"): _doc(
        "The ledger against Stripe's balance transactions", *GUARD, "422", *STRIPE
    ),
    ("GET", "/v1/finance/refunds/attention"): _doc(
        "Refunds Stripe refused or failed that nobody made good", *GUARD, "422"
    ),
    # parked Stripe events
    ("GET", "/v1/admin/webhooks/failed"): _doc(
        "Stripe events parked after failing, or still being retried", *GUARD, "422"
    ),
    ("POST", "/v1/admin/webhooks/{event_id}/replay"): _doc(
        "Process a parked Stripe event once more", *GUARD, "404", "409", "413"
    ),
    # outgoing events and the marketplace's endpoints
    ("GET", "/v1/admin/events"): _doc(
        "Outgoing events, oldest first after a cursor", *GUARD, "422"
    ),
    ("GET", "/v1/admin/events/types"): _doc("The outgoing event types", *GUARD),
    ("GET", "/v1/admin/events/health"): _doc("Delivery health of the outgoing events", *GUARD),
    ("GET", "/v1/admin/events/{event_id}"): _doc("One outgoing event", *GUARD, *ID),
    ("GET", "/v1/admin/events/endpoints"): _doc("Webhook endpoints", *GUARD),
    ("POST", "/v1/admin/events/endpoints"): _doc(
        "Register a webhook endpoint (its secret is shown once)",
        *GUARD,
        "413",
        "422",
        description="The URL must reach a public address over https, unless "
        "`COACHPAY_WEBHOOK_ALLOWED_NETWORKS` allows it.",
    ),
    ("GET", "/v1/admin/events/endpoints/{endpoint_id}"): _doc("One webhook endpoint", *GUARD, *ID),
    ("PATCH", "/v1/admin/events/endpoints/{endpoint_id}"): _doc(
        "Change a webhook endpoint (URL, types, enabled, ordered)", *GUARD, *ID, "413"
    ),
    ("POST", "/v1/admin/events/endpoints/{endpoint_id}/rotate-secret"): _doc(
        "A new signing secret, the old one signing too for an overlap", *GUARD, *ID, "413"
    ),
    ("GET", "/v1/admin/events/endpoints/{endpoint_id}/attempts"): _doc(
        "An endpoint's delivery log", *GUARD, *ID
    ),
    ("POST", "/v1/admin/events/endpoints/{endpoint_id}/replay"): _doc(
        "Send an event, or a time range of events, to an endpoint again", *GUARD, *ID, "413"
    ),
    # Stripe
    ("POST", "/v1/webhooks/stripe"): _doc(
        "Stripe events of the platform account",
        "400",
        "413",
        "503",
        public=True,
        description="Signed with the platform endpoint's secret (`Stripe-Signature`).",
    ),
    ("POST", "/v1/webhooks/stripe/connect"): _doc(
        "Stripe events of connected accounts",
        "400",
        "413",
        "503",
        public=True,
        description="Signed with the Connect endpoint's secret (`Stripe-Signature`).",
    ),
    # identity: API keys and roles
    ("POST", "/v1/admin/api-keys"): _doc(
        "Create an API key for the marketplace's backend",
        *GUARD,
        "413",
        "415",
        "422",
        description="The key (`cpk_...`) is in this answer only; coachpay keeps its SHA-256.",
    ),
    ("GET", "/v1/admin/api-keys"): _doc("List API keys (prefix, roles, last use)", *GUARD),
    ("DELETE", "/v1/admin/api-keys/{key_id}"): _doc("Revoke an API key", *GUARD, *ID),
    ("PATCH", "/v1/admin/users/{user_id}"): _doc("Change a user's role", *GUARD, *ID, "413", "415"),
}
