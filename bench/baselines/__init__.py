"""The servers the daemon is measured against (bench/peers.py starts each as a process of its own)."""
