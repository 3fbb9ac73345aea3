"""dcp-gateway: the DIP Connection Provider's connector to the MHHS Data Integration Platform."""

__version__ = "0.1.0"
