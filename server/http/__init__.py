"""The HTTP/REST transport (KServe v2 as Triton serves it), split as MLServer splits its rest/ package:

- :mod:`.codec`: JSON and binary tensors <-> protocol messages, with the limits of what a request may cost;
- :mod:`.security`: token, Origin and Host checks (ASGI middleware);
- :mod:`.routes`: the route handlers over the data plane, server-sent events;
- :mod:`.server`: uvicorn on its own thread.
"""

from .codec import Limits
from .server import HttpServer

__all__ = ["HttpServer", "Limits"]
