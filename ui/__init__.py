"""The page: a Gradio app over `harness` (a comparison of rows on this machine, and of rows on other machines).

One module per job: `context` (what the handlers share), `cards` (the words), `charts`, `views` (what the page
shows of a comparison, as `/generate`'s outputs), `other_cpus` (the second tab), `quality` (the quality report's
tab), `kiosk` (the booth screen), `system` (the System panel and `/health`), `gradio_queue` (visitor admission: the
only code reading Gradio's private queue), `handlers` (a visitor's comparison, the examples, the status timer) and
`layout` (the page and its launch). `app.py` only launches it.
"""
