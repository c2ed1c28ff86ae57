"""``edge-run --serve``: the HTTP server, its request checks, the OpenAI request and reply shapes, the one
model worker thread, live events, and the panel page."""
