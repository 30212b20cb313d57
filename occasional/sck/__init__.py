"""Sockets: length-prefixed frames and file-descriptor passing.

Internal. Imports nothing else from occasional, so central, the forkserver and
user processes can all use it without pulling in the runtime.
"""
