"""Proxy media: small all-intra copies of sources whose random access is expensive, made in the background.

A 1080p recording with a keyframe every 250 frames costs hundreds of milliseconds per random frame;
the same frame from an all-intra copy at the preview's size costs a few. ``store`` keeps the copies on
disk (keyed by the source's identity, within a budget), ``maker`` makes one at idle priority as a child
of the daemon, ``reader`` finds and decodes a frame in a worker by the renderer's own time rule, and
``manager`` decides which sources get one and runs the makers one at a time.
"""
