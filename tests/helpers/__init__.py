"""What several test modules share: stand-ins, builders, readers and child processes."""
