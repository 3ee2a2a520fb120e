"""TCP (RFC 9293) as pure machines: sequence arithmetic, the connection, the demultiplexer."""
