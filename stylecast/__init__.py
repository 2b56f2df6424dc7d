"""stylecast: serving neural style transfer and CNN understanding over Triton's gRPC protocol."""

__version__ = "0.1.0"
