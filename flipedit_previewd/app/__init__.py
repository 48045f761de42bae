"""The application: the composition root, routes, the frame use case, health and supervision."""
