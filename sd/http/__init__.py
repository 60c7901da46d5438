"""HTTP: routes (``app``), responses, middleware (auth, request metrics), pages for
people, and the server (dual-stack socket, TLS reload, uvicorn). It reads the sets'
rendered bodies and read-only views; it never changes them."""
