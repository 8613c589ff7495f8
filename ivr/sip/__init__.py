"""SIP workers: the only place that imports pjsua2 (house rule 4). `wire` is pure and shared."""
