"""Everything around the rows, one package per job:

- `compare`: one comparison run fairly: the rows' status and loading, validation, the timed runs, safety.
- `models`: finding the model's files (the Hub, a local copy) and building the random-weight stand-ins.
- `machines`: rows on other machines (remote instances of this app, a Ray cluster's kinds): one kind of run.
- `visitors`: admitting the public: who a request comes from, one comparison each, the wait, the page's images.
- `records`: what is kept: the committed results, quality reports, the computed examples, the system's facts.

`settings.py` ties them together (the operator's settings, `build_comparison`); `api.py` is the app's `/generate`
and `/health` contract; `prepare.py` builds every row's files ahead of time (`python -m harness.prepare`).
"""
