"""Sans-I/O HTTP semantics: pure functions and plain objects, no sockets."""
