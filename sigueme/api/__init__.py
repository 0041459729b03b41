"""The HTTP API (FastAPI): the app factory, routers, auth and error mapping. The only
part of Sígueme that knows about HTTP."""
