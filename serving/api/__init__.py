"""The proxy's HTTP API: one router per resource, shared schemas, auth and error handling."""
