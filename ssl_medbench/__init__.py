"""ssl_medbench: the library behind the benchmark of self-supervised pretext tasks for medical imaging.

Subpackages, lowest layer first (each imports only the layers below it):

- :mod:`ssl_medbench.core`: registry, errors, atomic writes, progress bars, config parsing, the run-tag schema;
- :mod:`ssl_medbench.datasets` and :mod:`ssl_medbench.networks`: data loaders and phantoms; encoders and decoders;
- :mod:`ssl_medbench.pretext_tasks`, :mod:`ssl_medbench.downstream`, :mod:`ssl_medbench.reports`: the plugins and reports.

The command line and the orchestration of a grid live in the separate ``benchmark`` package (``python -m benchmark``).
"""
