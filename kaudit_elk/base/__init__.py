"""The bottom layer: errors, the connection config file, the content folders. Imports nothing above it."""
