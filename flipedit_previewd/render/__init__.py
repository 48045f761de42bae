"""The render side in the daemon: admission, the dispatcher, the worker pool, the frame cache, render-ahead."""
