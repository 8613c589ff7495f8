"""Text to speech for `say` steps: engines (offline flite / espeak-ng, an HTTP service), a disk cache."""
