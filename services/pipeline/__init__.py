"""The pipeline on one machine, for ``eew demo``, ``eew validate``, benchmarks and tests.

- ``processes``: one ``eew <command>`` child process (``ServiceProcess``);
- ``local``: broker + detector + alerting (+ dashboard) as processes (``LocalPipeline``);
- ``publish``: an archive published with the replay library of ``eew replay``;
- ``collect``: every score and alert read back from the topics;
- ``metrics``: the services' /metrics as the run reads them;
- ``run``: an archive replayed block by block through the pipeline until every service is done
  (``run_pipeline``, event-time semantics whatever the speed);
- ``settings``: the settings the started services will use for the flags passed to them;
- ``receiver``: a local webhook receiver; ``archives``: the demo's archives and their pieces.

The services never import this package; it imports them (as a deployment would run them).
"""
