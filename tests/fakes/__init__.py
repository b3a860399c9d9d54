"""Small real fakes for tests: servers on 127.0.0.1 that behave like the services we depend on."""

from tests.fakes.openai_fault_server import FaultServer, LoggedRequest, grounded_pairs

__all__ = ["FaultServer", "LoggedRequest", "grounded_pairs"]
