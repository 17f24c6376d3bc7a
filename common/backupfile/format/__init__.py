"""What a backup file is: age encryption, the tar stream, the manifest, member checks."""
