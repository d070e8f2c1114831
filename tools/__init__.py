"""Developer tools (sm-local, the demo); not copied into the images."""
