"""Private parts of :mod:`scvi.inference.autotune`: the trials store and job claiming on pymongo 4
(``mongo``), the server (``server``), the search driver (``driver``), the worker and its command
line (``workers``), local worker processes (``launcher``), logging and progress (``logs``), the
default objective (``objective``) and the orchestration of a search (``search``)."""
