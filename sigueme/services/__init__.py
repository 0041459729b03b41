"""Services: the path of a fix and the other work that waits and talks to storage,
one floor above the adapters (store, bus) and the pure cores (geo, alerts)."""
