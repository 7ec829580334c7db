"""What comes out, in use: the loaders, vcp inspect, vcp export."""
