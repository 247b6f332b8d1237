"""The replay family: rehearse old tasks while learning new ones, from a memory of real
samples (``buffer.ReplayBuffer``) or from a generator that imitates them (``generators``).

Strategies: ``er``, ``er-ace``, ``mir``, ``agem``, ``gem``, ``derpp``, ``icarl``, ``gdumb``,
``generative-replay``."""
