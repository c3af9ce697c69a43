"""Code that runs inside codekiln pods (and in ``--local`` runs).

Subpackages: ``data`` (DataPipeline), ``model`` (Llama-style model), ``train``
(PretrainRun: pretraining and SFT), ``rl`` (RLRun), ``sandbox`` (SandboxPool).
Each has a torch-free ``config.py`` that the CRD schemas embed.
"""
