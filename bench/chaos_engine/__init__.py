"""The randomised fault run behind ``bench/chaos.py`` (see bench/README.md, "Chaos").

world: the scratch database, the one in-process emulator, the per-run reset and
the seeded population; faults: what goes wrong and the counters; stripe_events:
webhook delivery (late, twice, out of order) into the inbox; actions: the
things people, Stripe and the jobs do; invariants: the money checks after a
run; runner: one seeded run, and many.
"""
