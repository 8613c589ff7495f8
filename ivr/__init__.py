"""Self-hosted SIP/IVR call-routing server: YAML call flows, CRM lookups, REFER to call queues."""
