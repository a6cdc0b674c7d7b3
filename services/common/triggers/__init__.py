"""The trigger-and-pick rule, one home for detector, alerting and validation.

- ``picks``: how far before its trigger a P pick may lie, and that a pick is never earlier than the
  onset that triggered (``pick_for_trigger``).
- ``onset`` (detector level): when a station triggers, also anew on the next P while the previous
  event's coda still rings (re-arm rules).
- ``hysteresis`` (score level): how a stream's scores become triggers that start, stay on, end or
  are retracted (alerting and validation).
"""
