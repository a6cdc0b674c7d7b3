"""``eew validate``: replay an archive through broker -> detector -> alerting, score the alerts
against a catalogue and write a report (Markdown, HTML, CSV, JSON, PNG plots, QuakeML).

Layout: ``inputs`` (catalogue, archive index, inventory), ``core`` (pure matching and scoring),
``runner`` (the pipeline run and the topic collector), ``report``/``plots``/``quakeml`` (outputs),
``testarchive`` (the semi-synthetic archive with a known catalogue used by the tests).
"""
