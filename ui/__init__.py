"""The page: a Gradio app over `harness` (a comparison of rows on this machine, and of rows on remote instances).

One module per job: `context` (what the handlers share), `cards` (the words), `charts`, `other_cpus` (the second
tab), `system` (the System panel and `/health`), `gradio_queue` (visitor admission: the only code reading Gradio's
private queue), `handlers` (a visitor's comparison, the examples, the status timer) and `layout` (the page and its
launch). `app.py` only launches it.
"""
