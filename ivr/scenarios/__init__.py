"""Call tests generated from the flows: `ivr scenarios` (walk, SIPp XML, pcaps) and `ivr qa` (run, judge)."""
