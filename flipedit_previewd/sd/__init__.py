"""systemd: adopted sockets and the file descriptor store."""
