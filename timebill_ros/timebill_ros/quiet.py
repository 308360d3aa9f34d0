"""Imported first by each node: no progress bars in a node's log.

Under launch (``emulate_tty``) every redraw of a bar is a log line: a GGUF conversion's "Loading
weights" bar was hundreds of lines in the predictor node's log. tqdm reads ``TQDM_DISABLE`` when
it is imported, so this must run before anything imports it; a value set by the user wins.
"""
import os

os.environ.setdefault("TQDM_DISABLE", "1")
