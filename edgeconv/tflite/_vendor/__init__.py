"""Third-party code copied into edgeconv unmodified (see each file's header for source, license and reason)."""
