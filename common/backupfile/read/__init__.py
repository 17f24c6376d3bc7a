"""Reading a backup back: the plain stream, unpacking, verifying, restoring, free space."""
