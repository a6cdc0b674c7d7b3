"""``eew dashboard``: the operator's live web page (stations, events, alert versions, pipeline health)."""
