"""What is shown: the timeline model, the editor's project database, following projects, limits, where media may be "
"read from."""
