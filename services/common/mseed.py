"""One process-wide lock around ObsPy's libmseed calls.

ObsPy installs libmseed's log callbacks per call (``setupLogging`` with Python callbacks that
live only for that call). Two threads decoding miniSEED at once can leave libmseed holding a
callback that has already been freed: a corrupt record logged in one thread then segfaults the
process. Every miniSEED decode in this project goes through ``MSEED_LOCK``.
"""

import threading

MSEED_LOCK = threading.Lock()
