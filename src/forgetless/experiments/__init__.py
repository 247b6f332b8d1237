"""The experiment layer: running one configured run (``runner``), comparing strategies
(``compare``), sweeping hyper-parameters (``sweep``) and advising (``advise``).

It sits between the core (data, models, strategies, the Learner) and the interface (the CLI):
it imports the core, the core never imports it, and the CLI imports both.
"""
