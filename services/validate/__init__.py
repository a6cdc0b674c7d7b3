"""``eew validate``: replay an archive through broker -> detector -> alerting, score the alerts
against a catalogue and write a report (Markdown, HTML, CSV, JSON, PNG plots, QuakeML).

Layout: ``inputs`` (catalogue, archive index, inventory), ``core`` (pure matching and scoring),
``alerts`` (Alert messages <-> the core's AlertVersion), ``report``/``plots``/``quakeml`` (outputs),
``testarchive`` (the semi-synthetic archive with a known catalogue used by the tests). The run
itself (broker, services, replay, collection) is ``services.pipeline.run``; validate imports the
association and formats of the alerting, ``services.common`` and ``services.pipeline`` only.
"""
