"""What the test layers and the benchmarks share: the daemon harness, project builders, fake servers, load clients, "
"the systemd sandbox, the media corpus."""
