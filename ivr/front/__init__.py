"""The SIP front: Kamailio configured from the IVR YAML (trunk ACL, sanity, flood limits, dispatcher)."""

from ivr.front.kamailio import FrontError, FrontFiles, KamailioProcess, render, workers

__all__ = ["FrontError", "FrontFiles", "KamailioProcess", "render", "workers"]
