"""A local emulator of the Stripe API subset coachpay uses (see README.md)."""
