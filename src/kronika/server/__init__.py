"""The HTTP server: the ASGI app, its routes, middleware (auth, limits, headers) and health."""
