"""Operations of the pipeline: the local supervisor, the end-to-end checks and the admin tools.

Run from the repository root as `python -m scripts.<module>`; the shell scripts of the local
services live beside them in this folder.
"""
