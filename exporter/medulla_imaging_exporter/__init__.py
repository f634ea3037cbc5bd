"""Prometheus exporter for the imaging servers of Medulla (formerly Pulse 2).

The import name is ``medulla_imaging_exporter`` rather than ``exporter`` so that it
cannot shadow or be shadowed by any other installed package.
"""

__version__ = "0.1.0"
