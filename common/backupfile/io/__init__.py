"""Where the bytes go: storage, direct I/O, handoff between threads, hashing, progress."""
