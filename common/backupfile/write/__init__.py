"""Writing a backup: walking the sources, the archive, the whole pipeline."""
