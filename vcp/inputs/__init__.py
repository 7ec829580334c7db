"""What goes in: the RAW tree's discovery, sample videos for tests and the demo."""
