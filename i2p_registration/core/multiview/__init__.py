"""multiview."""
