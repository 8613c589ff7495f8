"""The live console on the admin port: `views` (page, SSE, JSON, SVG), `auth` (token guard), `series` (charts)."""
