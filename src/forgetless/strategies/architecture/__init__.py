"""The dynamic architecture family: give each task its own parameters and freeze the old ones,
so old knowledge is physically isolated. Forgetting is (near) zero by construction; the price is
growth (PNN) or capacity (PackNet, HAT), and the task id at test time.

Strategies: ``pnn``, ``packnet``, ``hat``; shared pieces in ``common``."""
