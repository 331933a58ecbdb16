"""One run: the request, its preparation (every problem before any work), plan, engine, report."""
