"""Pure parsers: text in, typed records and counted problems out. No I/O here."""
