"""Private parts of :mod:`scvi.inference.autotune`: the trials store and job claiming on pymongo 4
(``mongo``), the server (``server``), the search driver (``driver``), the workers (``workers``),
logging across processes (``logs``), the default objective (``objective``) and the search
orchestration (``search``)."""
