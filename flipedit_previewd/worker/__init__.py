"""What runs inside a render worker process: the wire format both ends import, compositing, media decoding."""
