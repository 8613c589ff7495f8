"""The pure flow engine: events in, commands out, the clock passed in. No I/O here (house rule 1)."""
